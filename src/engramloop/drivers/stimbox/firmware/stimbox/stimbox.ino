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
// Timers: Timer0 micros() (Arduino core), Timer1 the audio PWM, Timer2 (328P) or Timer3
// (32U4) the audio sample clock.
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

#if defined(__AVR__) && (defined(TIMSK2) || defined(TIMSK3))
static stimbox::audio::Pink pink = {0xACE1u, {0, 0, 0, 0, 0, 0, 0, 0}, 0, 0};

// Two timers. Timer1 is the PWM carrier: 8-bit fast PWM on OC1A at 62.5 kHz (16 MHz, no
// prescaler), far above the click band after the RC filter, no interrupt. A second timer
// is the sample clock: a compare-match interrupt every 768 cycles = 20.833 kHz, in which
// the next sample goes to OCR1A (double-buffered: it takes effect at the next PWM period).
// The first firmware took its samples from every third Timer1 overflow, which cost an
// interrupt every 256 cycles; the samples and their rate are the same.
#if defined(TIMSK2)
// ATmega328P (Uno, Nano): Timer2, CTC (WGM21), clk/8, OCR2A = 95 -> 96 x 8 = 768 cycles.
// Timer2 otherwise serves tone() and PWM on D3/D11, neither of which the stim box uses.
#define SAMPLE_VECT TIMER2_COMPA_vect
static void sample_clock_begin() {
  TCCR2A = _BV(WGM21);
  TCCR2B = _BV(CS21);
  OCR2A = 95;
}
static inline void sample_irq(uint8_t on) {
  if (on) TIMSK2 |= _BV(OCIE2A); else TIMSK2 &= (uint8_t)~_BV(OCIE2A);
}
#else
// ATmega32U4 (Leonardo, Micro): no Timer2; Timer3, CTC (WGM32), clk/1, OCR3A = 767.
#define SAMPLE_VECT TIMER3_COMPA_vect
static void sample_clock_begin() {
  TCCR3A = 0;
  TCCR3B = _BV(WGM32) | _BV(CS30);
  OCR3A = 767;
}
static inline void sample_irq(uint8_t on) {
  if (on) TIMSK3 |= _BV(OCIE3A); else TIMSK3 &= (uint8_t)~_BV(OCIE3A);
}
#endif

// One sample. Budget: 768 cycles for this ISR, Timer0's (micros), the UART's and the main
// loop; bench/firmware.py prints what it takes on simavr, tests/test_stimbox_avr.py bounds
// it. It runs only while a click plays (audio_play turns it on; the first sample after the
// click ends writes silence and turns it off), so a silent box spends no cycles on audio.
ISR(SAMPLE_VECT) {
  if (!click_on) {
    OCR1A = 128;                               // mid-scale = silence (AC-coupled output)
    sample_irq(0);
    return;
  }
  OCR1A = stimbox::audio::scale(pink.next(), click_gain_bytes[0], click_gain_bytes[1],
                                click_gain_bytes[2]);
}

static void audio_play() { sample_irq(1); }

static void audio_begin() {
  pinMode(AUDIO_PIN, OUTPUT);
  TCCR1A = _BV(COM1A1) | _BV(WGM10);           // non-inverting PWM on OC1A, 8-bit fast
  TCCR1B = _BV(WGM12) | _BV(CS10);             // fast PWM, clk/1
  OCR1A = 128;                                 // mid-scale = silence (AC-coupled output)
  sample_clock_begin();
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
