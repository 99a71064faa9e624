// engramloop stim box -- the click sound: pink noise scaled to the requested level.
//
// Runs inside the Timer1 overflow interrupt, once per audio sample (every 768 cycles at
// 16 MHz), so everything here is straight-line 8/16-bit work: no division, no call, no
// loop. Header-only and free of AVR calls, so the host build (host_harness.cpp, the tests)
// runs exactly this code.
//
// The samples are the ones the first firmware produced with
//     out = 128 + (pink * amplitude) / 74000          (C division: truncated toward 0)
// which cost a 32-bit divide (__divmodsi4, ~600 cycles) per sample. Here the division is
// replaced by a multiply with a 24-bit fraction computed once per amplitude (click_gain,
// in the main loop), chosen so the result is bit-identical for every pink value and every
// amplitude; tests/test_stimbox_firmware.py checks all 145 x 65536 pairs.
#ifndef STIMBOX_AUDIO_H
#define STIMBOX_AUDIO_H

#include <stdint.h>

#if defined(__AVR__)
#include <avr/pgmspace.h>
#define STIMBOX_FLASH PROGMEM
#define STIMBOX_FLASH_BYTE(p) pgm_read_byte(p)
#else
#define STIMBOX_FLASH
#define STIMBOX_FLASH_BYTE(p) (*(p))
#endif

#if defined(__GNUC__)
#define STIMBOX_INLINE inline __attribute__((always_inline))
#else
#define STIMBOX_INLINE inline
#endif

namespace stimbox {
namespace audio {

// The row a Voss-McCartney generator redraws at sample counter c: the number of trailing
// zero bits of c, 7 for c = 0 and for c with 7 trailing zeros (8 rows, 0..7).
// Row k is redrawn every 2^k samples. The table replaces a loop of up to 7 passes.
static const uint8_t VOSS_ROW[256] STIMBOX_FLASH = {
  7, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0,
  5, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0,
  6, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0,
  5, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0,
  7, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0,
  5, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0,
  6, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0,
  5, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0, 4, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0,
};

// Pink (1/f) noise: white noise from a 16-bit Galois LFSR x^16 + x^14 + x^13 + x^11 + 1
// (taps 0xB400, maximal length), summed over 8 Voss-McCartney rows -- row k redrawn every
// 2^k samples -- plus one fresh white value, which approximates -3 dB per octave over the
// rows' octaves (Gardner 1978; McCartney's variant). Each term is in [-16, 15], so a
// sample is in [-144, 135].
struct Pink {
  uint16_t lfsr;
  int8_t rows[8];
  int16_t row_sum;
  uint8_t counter;

  void reset() {
    lfsr = 0xACE1u;
    for (uint8_t i = 0; i < 8; i++) rows[i] = 0;
    row_sum = 0;
    counter = 0;
  }

  STIMBOX_INLINE int8_t white5() {   // next LFSR state's low byte >> 3: [-16, 15]
    uint8_t lsb = (uint8_t)(lfsr & 1u);
    lfsr >>= 1;
    if (lsb) lfsr ^= 0xB400u;
    return (int8_t)((int8_t)(uint8_t)lfsr >> 3);
  }

  STIMBOX_INLINE int16_t next() {
    counter++;
    uint8_t k = STIMBOX_FLASH_BYTE(&VOSS_ROW[counter]);
    int8_t v = white5();
    row_sum += (int16_t)(v - rows[k]);
    rows[k] = v;
    return (int16_t)(row_sum + white5());
  }
};

// The level as a 24-bit binary fraction: gain = ceil(amplitude * 2^24 / 74000), so that
// scale() gives trunc(pink * amplitude / 74000) exactly (74000 = 144 * 65535 / 127.5:
// full scale maps the largest pink value to +-127 around mid-scale 128). Computed as
// 226 * amplitude + ceil(amplitude * 3326 / 4625), since 2^24 / 74000 = 2^20 / 4625 and
// 2^20 = 226 * 4625 + 3326 -- one 32-bit division, in the main loop, once per amplitude.
inline uint32_t click_gain(uint16_t amplitude) {
  uint32_t a = amplitude;
  return 226UL * a + (a * 3326UL + 4624UL) / 4625UL;
}

// PWM compare value for one sample: 128 + trunc(pink * amplitude / 74000), from the gain's
// three bytes g0 (least significant) to g2. |pink| <= 144 and gain < 2^24, so the top byte
// of |pink| * gain is built from three 8 x 8 -> 16 bit multiplies (one MUL each on AVR)
// with the carries folded in from below.
STIMBOX_INLINE uint8_t scale(int16_t pink, uint8_t g0, uint8_t g1, uint8_t g2) {
  uint8_t neg = pink < 0;
  uint8_t m = (uint8_t)(neg ? -pink : pink);
  uint16_t lo = (uint16_t)((uint16_t)m * g0);
  uint16_t mid = (uint16_t)((uint16_t)m * g1 + (uint8_t)(lo >> 8));
  uint16_t hi = (uint16_t)((uint16_t)m * g2 + (uint8_t)(mid >> 8));
  uint8_t q = (uint8_t)(hi >> 8);          // <= 127
  return (uint8_t)(neg ? 128 - q : 128 + q);
}

}  // namespace audio
}  // namespace stimbox

#endif  // STIMBOX_AUDIO_H
