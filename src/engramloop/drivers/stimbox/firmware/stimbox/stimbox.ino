// engramloop stim box -- reference firmware for an Arduino-class board.
//
// Four TTL outputs (gate a stimulus isolator, an LED driver, a camera/amplifier sync
// input) and one audio output playing pink-noise clicks for closed-loop auditory
// stimulation. The protocol and every safety rule live in stimbox_core.h (shared with the
// host build that the test suite runs against the Python emulator); this file only wires
// the core to pins, the serial port, micros() and the audio timer.
//
// Targets: ATmega328P (Uno, Nano) and ATmega32U4 (Leonardo, Micro; native USB, lower
// latency -- preferred). Other boards build without the audio output (TTL only).
// Build and wiring: ../README.md. Protocol: ../../PROTOCOL.md.

#include <Arduino.h>

#include "stimbox_core.h"

#if defined(__AVR__)
#include <avr/interrupt.h>
#include <avr/wdt.h>
#endif

// ---- pins ------------------------------------------------------------------------------
static const uint8_t TTL_PINS[stimbox::N_TTL] = {2, 3, 4, 5};  // channels 1-4
static const uint8_t AUDIO_PIN = 9;      // OC1A: Timer1 PWM -> RC low-pass -> amplifier
static const uint8_t ARMED_LED = 13;     // lit while armed

// ---- audio: pink noise from a 16-bit LFSR through a Voss-McCartney row sum -------------
// White noise: Galois LFSR x^16 + x^14 + x^13 + x^11 + 1 (taps 0xB400, maximal length).
// Pink (1/f) noise: Voss-McCartney -- row k is redrawn every 2^k samples (chosen by the
// trailing zeros of a sample counter) and the rows are summed, which approximates a -3 dB
// per octave spectrum over the rows' octaves (Gardner 1978; McCartney's variant).
static volatile uint8_t click_on = 0;
static volatile uint16_t click_amplitude = 0;
static uint16_t lfsr = 0xACE1u;
static int8_t rows[8];
static int16_t row_sum = 0;
static uint8_t counter = 0;

static inline int8_t white8() {
  uint16_t lsb = lfsr & 1u;
  lfsr >>= 1;
  if (lsb) lfsr ^= 0xB400u;
  return (int8_t)(lfsr & 0xFF);
}

static inline int16_t pink_sample() {
  counter++;
  uint8_t c = counter, k = 0;
  while (k < 7 && !(c & 1)) { c >>= 1; k++; }
  int8_t v = white8() >> 3;             // each row in [-16, 15]
  row_sum += v - rows[k];
  rows[k] = v;
  return row_sum + (white8() >> 3);     // |sum| <= 9 * 16 = 144
}

#if defined(__AVR__)
// Timer1 overflow at 62.5 kHz (fast PWM, 8 bit, no prescaler, 16 MHz); a new sample every
// third overflow = 20.8 kHz, well above the click band after the RC filter.
ISR(TIMER1_OVF_vect) {
  static uint8_t div = 0;
  if (++div < 3) return;
  div = 0;
  if (!click_on) { OCR1A = 128; return; }
  int32_t s = (int32_t)pink_sample() * click_amplitude;   // +-144 * 65535
  int16_t out = 128 + (int16_t)(s / 74000L);              // +-127 at full scale
  OCR1A = (uint8_t)(out < 0 ? 0 : (out > 255 ? 255 : out));
}

static void audio_begin() {
  pinMode(AUDIO_PIN, OUTPUT);
  TCCR1A = _BV(COM1A1) | _BV(WGM10);           // non-inverting PWM on OC1A, 8-bit fast
  TCCR1B = _BV(WGM12) | _BV(CS10);             // fast PWM, clk/1
  OCR1A = 128;                                 // mid-scale = silence (AC-coupled output)
  TIMSK1 |= _BV(TOIE1);
}
#else
static void audio_begin() {}                   // no audio output on this board
#endif

// ---- core callbacks --------------------------------------------------------------------
static void on_output(uint8_t channel, uint8_t level, uint16_t amplitude) {
  if (channel >= 1 && channel <= stimbox::N_TTL) {
    digitalWrite(TTL_PINS[channel - 1], level ? HIGH : LOW);
  } else if (channel == stimbox::AUDIO_CHANNEL) {
    click_amplitude = amplitude;
    click_on = level;
  }
}

static void on_edge(uint8_t, uint32_t, uint16_t) {}

static stimbox::Core core(on_output, on_edge);

void setup() {
  // Outputs low before anything else (10 k pull-downs hold them low during reset, when
  // the pins are still inputs -- see README).
  for (uint8_t i = 0; i < stimbox::N_TTL; i++) {
    digitalWrite(TTL_PINS[i], LOW);
    pinMode(TTL_PINS[i], OUTPUT);
  }
  pinMode(ARMED_LED, OUTPUT);
  digitalWrite(ARMED_LED, LOW);
  audio_begin();
  core.boot();                                 // disarmed, outputs low
  Serial.begin(115200);                        // ignored by native-USB boards
#if defined(__AVR__)
  wdt_enable(WDTO_60MS);                       // a hung loop resets the board: outputs low
#endif
}

void loop() {
#if defined(__AVR__)
  wdt_reset();
#endif
  uint32_t now = micros();
  core.tick(now);
  while (Serial.available() > 0) {
    int b = Serial.read();
    if (b < 0) break;
    core.feed((uint8_t)b, micros());
  }
  core.tick(micros());
  if (core.tx_len) {
    Serial.write(core.tx, core.tx_len);
    core.tx_len = 0;
  }
  digitalWrite(ARMED_LED, core.armed ? HIGH : LOW);
}
