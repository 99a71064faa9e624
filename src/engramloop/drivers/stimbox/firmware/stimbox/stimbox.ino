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

#include "stimbox_audio.h"
#include "stimbox_core.h"

#if defined(__AVR__)
#include <avr/interrupt.h>
#include <avr/wdt.h>
#endif

// ---- pins ------------------------------------------------------------------------------
static const uint8_t TTL_PINS[stimbox::N_TTL] = {2, 3, 4, 5};  // channels 1-4
static const uint8_t AUDIO_PIN = 9;      // OC1A: Timer1 PWM -> RC low-pass -> amplifier
static const uint8_t ARMED_LED = 13;     // lit while armed

// ---- audio: pink-noise clicks (stimbox_audio.h) ---------------------------------------
// The ISR reads the gain only while click_on is 1; the main loop writes it only after
// setting click_on to 0 (single-byte volatile stores, so no lock is needed).
static volatile uint8_t click_on = 0;
static volatile uint8_t click_gain_bytes[3] = {0, 0, 0};   // audio::click_gain, LSB first
static uint16_t click_gain_amplitude = 0;                   // the amplitude it was made for

#if defined(__AVR__)
static stimbox::audio::Pink pink = {0xACE1u, {0, 0, 0, 0, 0, 0, 0, 0}, 0, 0};

// Timer1 overflow at 62.5 kHz (fast PWM, 8 bit, no prescaler, 16 MHz); a new sample every
// third overflow = 20.8 kHz, well above the click band after the RC filter. Budget: 768
// cycles per sample for this ISR (three times), Timer0's (micros) and the main loop;
// bench/firmware.py prints what it takes on simavr, tests/test_stimbox_avr.py bounds it.
// The interrupt runs only while a click plays (audio_play turns it on, the first sample
// after the click ends turns it off), so a silent box spends no cycles on audio.
ISR(TIMER1_OVF_vect) {
  static uint8_t div = 0;
  if (++div < 3) return;
  div = 0;
  if (!click_on) {
    OCR1A = 128;                               // mid-scale = silence (AC-coupled output)
    TIMSK1 &= (uint8_t)~_BV(TOIE1);
    return;
  }
  OCR1A = stimbox::audio::scale(pink.next(), click_gain_bytes[0], click_gain_bytes[1],
                                click_gain_bytes[2]);
}

static void audio_play() { TIMSK1 |= _BV(TOIE1); }

static void audio_begin() {
  pinMode(AUDIO_PIN, OUTPUT);
  TCCR1A = _BV(COM1A1) | _BV(WGM10);           // non-inverting PWM on OC1A, 8-bit fast
  TCCR1B = _BV(WGM12) | _BV(CS10);             // fast PWM, clk/1
  OCR1A = 128;                                 // mid-scale = silence (AC-coupled output)
}
#else
static void audio_begin() {}                   // no audio output on this board
static void audio_play() {}
#endif

// ---- core callbacks --------------------------------------------------------------------
static void on_output(uint8_t channel, uint8_t level, uint16_t amplitude) {
  if (channel >= 1 && channel <= stimbox::N_TTL) {
    digitalWrite(TTL_PINS[channel - 1], level ? HIGH : LOW);
  } else if (channel == stimbox::AUDIO_CHANNEL) {
    if (level && amplitude != click_gain_amplitude) {
      // a new level: one 32-bit division here (~40 us, main loop), none per sample
      click_on = 0;
      uint32_t g = stimbox::audio::click_gain(amplitude);
      click_gain_bytes[0] = (uint8_t)g;
      click_gain_bytes[1] = (uint8_t)(g >> 8);
      click_gain_bytes[2] = (uint8_t)(g >> 16);
      click_gain_amplitude = amplitude;
    }
    click_on = level;
    if (level) audio_play();
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
