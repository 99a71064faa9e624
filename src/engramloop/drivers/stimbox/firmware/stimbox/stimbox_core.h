// engramloop stim box -- the device state machine, independent of the board.
//
// Header-only, no heap, no STL, no Arduino calls: time is handed in (microseconds, uint32,
// wrapping every 71.6 min; all comparisons are wrap-safe int32 differences) and outputs go
// through two callbacks. stimbox.ino wires it to pins, Serial and micros(); host_harness.cpp
// wires it to stdin/stdout so the test suite can compile it with g++ and compare it, frame
// by frame, with the Python emulator (sim/stimbox_emulator.py). PROTOCOL.md is normative.
//
// Safety rules implemented here (PROTOCOL.md "Device rules"):
//   - boots disarmed, every output low;
//   - armed only by ARM, and only while a HEARTBEAT (or ARM) arrived within WATCHDOG_US;
//   - its own refractory period and maximum trigger rate;
//   - a partial frame idle for more than GAP_US is discarded: it never waits forever;
//   - only frames with a valid CRC-16/CCITT-FALSE are acted upon: garbage never pulses.
#ifndef STIMBOX_CORE_H
#define STIMBOX_CORE_H

#include <stdint.h>
#include <string.h>

namespace stimbox {

// ---- protocol constants (PROTOCOL.md) --------------------------------------------------
static const uint8_t SYNC0 = 0xA5, SYNC1 = 0x5A;
static const uint8_t MAX_PAYLOAD = 48;
static const uint16_t FIRMWARE_VERSION = 1;

enum MsgType : uint8_t {
  ARM = 0x01, DISARM = 0x02, PULSE = 0x03, TRAIN = 0x04, STOP = 0x05, STATUS = 0x06,
  HEARTBEAT = 0x07, ACK = 0x81, NACK = 0x82, STATUS_REPLY = 0x83
};
enum Shape : uint8_t { MONOPHASIC = 0, BIPHASIC = 1, CLICK = 2 };
enum NackReason : uint8_t {
  NOT_ARMED = 1, REFRACTORY = 2, RATE_LIMIT = 3, BAD_CHANNEL = 4, BAD_SHAPE = 5,
  BAD_WIDTH = 6, BAD_AMPLITUDE = 7, BAD_DELAY = 8, BAD_TRAIN = 9, BAD_LENGTH = 10,
  UNKNOWN_COMMAND = 11, BUSY = 12
};
enum DisarmCause : uint8_t { CAUSE_BOOT = 0, CAUSE_HOST = 1, CAUSE_WATCHDOG = 2,
                             CAUSE_ARMED = 255 };

// ---- device limits (PROTOCOL.md "Device limits"; the emulator uses the same numbers) ---
#ifndef STIMBOX_N_TTL
#define STIMBOX_N_TTL 4
#endif
static const uint8_t N_TTL = STIMBOX_N_TTL;           // TTL outputs are channels 1..N_TTL
static const uint8_t AUDIO_CHANNEL = N_TTL + 1;       // pink-noise click output
static const uint8_t N_CHANNELS = N_TTL + 1;
static const uint32_t WATCHDOG_US = 100000UL;
static const uint32_t GAP_US = 100000UL;
static const uint32_t REFRACTORY_US = 40000UL;
static const uint8_t MAX_RATE_PER_S = 20;
static const uint16_t MIN_WIDTH_US = 10, MAX_WIDTH_US = 50000;
static const uint32_t MAX_DELAY_US = 1000000UL;
static const uint16_t MAX_TRAIN_COUNT = 100;
static const uint32_t MIN_TRAIN_INTERVAL_US = 1000UL;
static const uint32_t MAX_TRAIN_SPAN_US = 2000000UL;

inline int32_t since(uint32_t now, uint32_t then) { return (int32_t)(now - then); }

// CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no xorout (check 0x29B1).
// One table lookup per byte: CRC_TABLE[i] is the CRC register after shifting the byte i
// through it from zero (eight steps of "shift left, XOR 0x1021 if the top bit fell out").
// The bit-by-bit loop it replaces cost ~100 cycles a byte on the AVR, ~2 500 per PULSE
// (its frame and the ACK's), most of the time between a command's last byte and its
// edge (bench/firmware.py).
#if defined(__AVR__)
#include <avr/pgmspace.h>
#define STIMBOX_CRC_TABLE_WORD(p) pgm_read_word(p)
static const uint16_t CRC_TABLE[256] PROGMEM = {
#else
#define STIMBOX_CRC_TABLE_WORD(p) (*(p))
static const uint16_t CRC_TABLE[256] = {
#endif
  0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50A5, 0x60C6, 0x70E7,
  0x8108, 0x9129, 0xA14A, 0xB16B, 0xC18C, 0xD1AD, 0xE1CE, 0xF1EF,
  0x1231, 0x0210, 0x3273, 0x2252, 0x52B5, 0x4294, 0x72F7, 0x62D6,
  0x9339, 0x8318, 0xB37B, 0xA35A, 0xD3BD, 0xC39C, 0xF3FF, 0xE3DE,
  0x2462, 0x3443, 0x0420, 0x1401, 0x64E6, 0x74C7, 0x44A4, 0x5485,
  0xA56A, 0xB54B, 0x8528, 0x9509, 0xE5EE, 0xF5CF, 0xC5AC, 0xD58D,
  0x3653, 0x2672, 0x1611, 0x0630, 0x76D7, 0x66F6, 0x5695, 0x46B4,
  0xB75B, 0xA77A, 0x9719, 0x8738, 0xF7DF, 0xE7FE, 0xD79D, 0xC7BC,
  0x48C4, 0x58E5, 0x6886, 0x78A7, 0x0840, 0x1861, 0x2802, 0x3823,
  0xC9CC, 0xD9ED, 0xE98E, 0xF9AF, 0x8948, 0x9969, 0xA90A, 0xB92B,
  0x5AF5, 0x4AD4, 0x7AB7, 0x6A96, 0x1A71, 0x0A50, 0x3A33, 0x2A12,
  0xDBFD, 0xCBDC, 0xFBBF, 0xEB9E, 0x9B79, 0x8B58, 0xBB3B, 0xAB1A,
  0x6CA6, 0x7C87, 0x4CE4, 0x5CC5, 0x2C22, 0x3C03, 0x0C60, 0x1C41,
  0xEDAE, 0xFD8F, 0xCDEC, 0xDDCD, 0xAD2A, 0xBD0B, 0x8D68, 0x9D49,
  0x7E97, 0x6EB6, 0x5ED5, 0x4EF4, 0x3E13, 0x2E32, 0x1E51, 0x0E70,
  0xFF9F, 0xEFBE, 0xDFDD, 0xCFFC, 0xBF1B, 0xAF3A, 0x9F59, 0x8F78,
  0x9188, 0x81A9, 0xB1CA, 0xA1EB, 0xD10C, 0xC12D, 0xF14E, 0xE16F,
  0x1080, 0x00A1, 0x30C2, 0x20E3, 0x5004, 0x4025, 0x7046, 0x6067,
  0x83B9, 0x9398, 0xA3FB, 0xB3DA, 0xC33D, 0xD31C, 0xE37F, 0xF35E,
  0x02B1, 0x1290, 0x22F3, 0x32D2, 0x4235, 0x5214, 0x6277, 0x7256,
  0xB5EA, 0xA5CB, 0x95A8, 0x8589, 0xF56E, 0xE54F, 0xD52C, 0xC50D,
  0x34E2, 0x24C3, 0x14A0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405,
  0xA7DB, 0xB7FA, 0x8799, 0x97B8, 0xE75F, 0xF77E, 0xC71D, 0xD73C,
  0x26D3, 0x36F2, 0x0691, 0x16B0, 0x6657, 0x7676, 0x4615, 0x5634,
  0xD94C, 0xC96D, 0xF90E, 0xE92F, 0x99C8, 0x89E9, 0xB98A, 0xA9AB,
  0x5844, 0x4865, 0x7806, 0x6827, 0x18C0, 0x08E1, 0x3882, 0x28A3,
  0xCB7D, 0xDB5C, 0xEB3F, 0xFB1E, 0x8BF9, 0x9BD8, 0xABBB, 0xBB9A,
  0x4A75, 0x5A54, 0x6A37, 0x7A16, 0x0AF1, 0x1AD0, 0x2AB3, 0x3A92,
  0xFD2E, 0xED0F, 0xDD6C, 0xCD4D, 0xBDAA, 0xAD8B, 0x9DE8, 0x8DC9,
  0x7C26, 0x6C07, 0x5C64, 0x4C45, 0x3CA2, 0x2C83, 0x1CE0, 0x0CC1,
  0xEF1F, 0xFF3E, 0xCF5D, 0xDF7C, 0xAF9B, 0xBFBA, 0x8FD9, 0x9FF8,
  0x6E17, 0x7E36, 0x4E55, 0x5E74, 0x2E93, 0x3EB2, 0x0ED1, 0x1EF0,
};

inline uint16_t crc16_update(uint16_t crc, uint8_t b) {
  return (uint16_t)((crc << 8) ^ STIMBOX_CRC_TABLE_WORD(&CRC_TABLE[(uint8_t)(crc >> 8) ^ b]));
}

inline uint16_t rd16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }
inline uint32_t rd32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
         ((uint32_t)p[3] << 24);
}
inline void wr16(uint8_t* p, uint16_t v) { p[0] = v & 0xFF; p[1] = v >> 8; }
inline void wr32(uint8_t* p, uint32_t v) {
  p[0] = v & 0xFF; p[1] = (v >> 8) & 0xFF; p[2] = (v >> 16) & 0xFF; p[3] = v >> 24;
}
inline uint16_t sat16(uint32_t v) { return v > 0xFFFF ? 0xFFFF : (uint16_t)v; }

// Called when a channel's output changes: level 1 = high (TTL) / click playing.
typedef void (*OutputFn)(uint8_t channel, uint8_t level, uint16_t amplitude);
// Called at each rising edge: channel, device time, index in the train.
typedef void (*EdgeFn)(uint8_t channel, uint32_t edge_us, uint16_t index);

struct Channel {
  uint8_t active;       // a pulse/train is scheduled or playing
  uint8_t high;
  uint16_t remaining;   // edges still to fire
  uint16_t count, width_us, amplitude;
  uint32_t next_us, interval_us, end_us, low_at_us;
};

class Core {
 public:
  // Counters (STATUS_REPLY)
  uint32_t frames_ok, edges, garbage_bytes;
  uint32_t crc_errors, gap_discards, length_errors, nacks;
  uint8_t armed, disarm_cause;
  uint32_t last_hb_us;
  // Reply buffer: frames produced by the last feed(); the glue sends and clears it.
  uint8_t tx[256];
  uint16_t tx_len;

  Core(OutputFn out, EdgeFn edge) : out_(out), edge_(edge) { boot(); }

  void boot() {
    frames_ok = edges = garbage_bytes = crc_errors = gap_discards = length_errors = nacks = 0;
    armed = 0; disarm_cause = CAUSE_BOOT; last_hb_us = 0; tx_len = 0;
    state_ = HUNT; last_byte_us_ = 0; last_onset_valid_ = 0; last_onset_us_ = 0;
    n_onsets_ = 0; onset_head_ = 0;
    memset(ch_, 0, sizeof(ch_));
    for (uint8_t c = 1; c <= N_CHANNELS; c++) out_(c, 0, 0);   // outputs low at boot
  }

  // Advance time: intra-frame gap, watchdog, edges due, outputs falling.
  void tick(uint32_t now) {
    if (state_ != HUNT && since(now, last_byte_us_) > (int32_t)GAP_US) {
      gap_discards++;
      state_ = HUNT;
    }
    if (armed && since(now, last_hb_us) > (int32_t)WATCHDOG_US) disarm(CAUSE_WATCHDOG, now);
    for (uint8_t c = 1; c <= N_CHANNELS; c++) {
      Channel& ch = ch_[c - 1];
      if (!ch.active) continue;
      while (ch.remaining && since(now, ch.next_us) >= 0) {
        uint32_t t = ch.next_us;
        ch.high = 1;
        ch.low_at_us = t + ch.width_us;
        out_(c, 1, ch.amplitude);
        edges++;
        edge_(c, t, (uint16_t)(ch.count - ch.remaining));
        ch.remaining--;
        ch.next_us += ch.interval_us;
      }
      if (ch.high && since(now, ch.low_at_us) >= 0) { ch.high = 0; out_(c, 0, 0); }
      if (!ch.remaining && since(now, ch.end_us) >= 0) ch.active = 0;
    }
  }

  // One received byte at device time `now`; replies are appended to tx.
  void feed(uint8_t b, uint32_t now) {
    if (state_ != HUNT && since(now, last_byte_us_) > (int32_t)GAP_US) {
      gap_discards++;
      state_ = HUNT;
    }
    last_byte_us_ = now;
    switch (state_) {
      case HUNT:
        if (b == SYNC0) state_ = SYNC_1; else garbage_bytes++;
        break;
      case SYNC_1:
        if (b == SYNC1) state_ = LEN;
        else if (b == SYNC0) garbage_bytes++;
        else { garbage_bytes += 2; state_ = HUNT; }
        break;
      case LEN:
        if (b > MAX_PAYLOAD) { length_errors++; state_ = HUNT; }
        else { len_ = b; state_ = SEQ; }
        break;
      case SEQ: seq_ = b; state_ = TYPE; break;
      case TYPE: type_ = b; n_ = 0; state_ = len_ ? PAYLOAD : CRC0; break;
      case PAYLOAD:
        payload_[n_++] = b;
        if (n_ == len_) state_ = CRC0;
        break;
      case CRC0: crc_lo_ = b; state_ = CRC1; break;
      case CRC1: {
        uint16_t crc = 0xFFFF;
        crc = crc16_update(crc, len_);
        crc = crc16_update(crc, seq_);
        crc = crc16_update(crc, type_);
        for (uint8_t i = 0; i < len_; i++) crc = crc16_update(crc, payload_[i]);
        state_ = HUNT;
        if ((uint16_t)(crc_lo_ | (b << 8)) == crc) { frames_ok++; handle(now); }
        else crc_errors++;
        break;
      }
    }
  }

  bool output_high(uint8_t c) const { return ch_[c - 1].high; }

 private:
  enum State : uint8_t { HUNT, SYNC_1, LEN, SEQ, TYPE, PAYLOAD, CRC0, CRC1 };
  OutputFn out_;
  EdgeFn edge_;
  State state_;
  uint8_t len_, seq_, type_, n_, crc_lo_;
  uint8_t payload_[MAX_PAYLOAD];
  uint32_t last_byte_us_;
  Channel ch_[N_CHANNELS];
  uint8_t last_onset_valid_;
  uint32_t last_onset_us_;
  uint32_t onsets_[MAX_RATE_PER_S];
  uint8_t n_onsets_, onset_head_;

  void outputs_off() {
    for (uint8_t c = 1; c <= N_CHANNELS; c++) {
      Channel& ch = ch_[c - 1];
      ch.active = 0; ch.remaining = 0;
      if (ch.high) { ch.high = 0; out_(c, 0, 0); }
    }
  }

  void disarm(uint8_t cause, uint32_t now) {
    (void)now;
    armed = 0;
    disarm_cause = cause;
    outputs_off();
  }

  void frame(uint8_t type, const uint8_t* p, uint8_t n) {
    if ((uint16_t)(tx_len + 7 + n) > (uint16_t)sizeof(tx)) return;  // host not reading: drop
    uint8_t* f = tx + tx_len;
    f[0] = SYNC0; f[1] = SYNC1; f[2] = n; f[3] = seq_; f[4] = type;
    memcpy(f + 5, p, n);
    uint16_t crc = 0xFFFF;
    for (uint8_t i = 2; i < 5 + n; i++) crc = crc16_update(crc, f[i]);
    wr16(f + 5 + n, crc);
    tx_len += 7 + n;
  }

  void ack(uint32_t now, uint32_t edge_us) {
    uint8_t p[9];
    p[0] = type_; wr32(p + 1, now); wr32(p + 5, edge_us);
    frame(ACK, p, 9);
  }

  void nack(uint8_t reason, uint32_t now) {
    uint8_t p[6];
    nacks++;
    p[0] = type_; p[1] = reason; wr32(p + 2, now);
    frame(NACK, p, 6);
  }

  void status(uint32_t now) {
    uint8_t p[36];
    p[0] = armed; p[1] = armed ? (uint8_t)CAUSE_ARMED : disarm_cause;
    wr16(p + 2, FIRMWARE_VERSION); wr32(p + 4, now); wr32(p + 8, frames_ok);
    wr32(p + 12, edges); wr32(p + 16, garbage_bytes); wr16(p + 20, sat16(crc_errors));
    wr16(p + 22, sat16(gap_discards)); wr16(p + 24, sat16(length_errors));
    wr16(p + 26, sat16(nacks)); wr32(p + 28, REFRACTORY_US); wr16(p + 32, MAX_RATE_PER_S);
    p[34] = N_TTL; p[35] = AUDIO_CHANNEL;
    frame(STATUS_REPLY, p, 36);
  }

  void handle(uint32_t now) {
    // The watchdog is checked before any frame is acted upon, not only in tick().
    if (armed && since(now, last_hb_us) > (int32_t)WATCHDOG_US) disarm(CAUSE_WATCHDOG, now);
    bool simple = type_ == ARM || type_ == DISARM || type_ == STOP || type_ == STATUS ||
                  type_ == HEARTBEAT;
    if (simple && len_) { nack(BAD_LENGTH, now); return; }
    switch (type_) {
      case HEARTBEAT: last_hb_us = now; ack(now, now); return;
      case ARM: armed = 1; last_hb_us = now; ack(now, now); return;
      case DISARM: disarm(CAUSE_HOST, now); ack(now, now); return;
      case STOP: outputs_off(); ack(now, now); return;
      case STATUS: status(now); return;
      case PULSE: case TRAIN: pulse(now); return;
      default: nack(UNKNOWN_COMMAND, now); return;
    }
  }

  void pulse(uint32_t now) {
    bool train = type_ == TRAIN;
    if (len_ != (train ? 16 : 10)) { nack(BAD_LENGTH, now); return; }
    uint8_t channel = payload_[0], shape = payload_[1];
    uint16_t width = rd16(payload_ + 2), amplitude = rd16(payload_ + 4);
    uint32_t delay = rd32(payload_ + 6);
    uint16_t count = train ? rd16(payload_ + 10) : 1;
    uint32_t interval = train ? rd32(payload_ + 12) : 0;
    if (!armed) { nack(NOT_ARMED, now); return; }
    bool ttl = channel >= 1 && channel <= N_TTL;
    if (!ttl && channel != AUDIO_CHANNEL) { nack(BAD_CHANNEL, now); return; }
    if ((ttl && shape != MONOPHASIC) || (!ttl && shape != CLICK)) { nack(BAD_SHAPE, now); return; }
    if (width < MIN_WIDTH_US || width > MAX_WIDTH_US) { nack(BAD_WIDTH, now); return; }
    if (amplitude == 0) { nack(BAD_AMPLITUDE, now); return; }
    if (delay > MAX_DELAY_US) { nack(BAD_DELAY, now); return; }
    if (train) {
      uint32_t min_iv = (uint32_t)width + MIN_WIDTH_US;
      if (min_iv < MIN_TRAIN_INTERVAL_US) min_iv = MIN_TRAIN_INTERVAL_US;
      if (count < 1 || count > MAX_TRAIN_COUNT || interval < min_iv ||
          (uint64_t)(count - 1) * interval > MAX_TRAIN_SPAN_US) {
        nack(BAD_TRAIN, now); return;
      }
    }
    Channel& ch = ch_[channel - 1];
    if (ch.active && (ch.remaining || since(now, ch.end_us) < 0)) { nack(BUSY, now); return; }
    uint32_t edge0 = now + delay;
    if (last_onset_valid_) {
      int32_t d = since(edge0, last_onset_us_);
      if (d < 0) d = -d;
      if (d < (int32_t)REFRACTORY_US) { nack(REFRACTORY, now); return; }
    }
    uint8_t near = 0;
    for (uint8_t i = 0; i < n_onsets_; i++) {
      int32_t d = since(edge0, onsets_[i]);
      if (d < 0) d = -d;
      if (d < 1000000L) near++;
    }
    if (near >= MAX_RATE_PER_S) { nack(RATE_LIMIT, now); return; }
    ch.active = 1; ch.remaining = count; ch.count = count; ch.width_us = width;
    ch.amplitude = amplitude; ch.next_us = edge0; ch.interval_us = interval;
    ch.end_us = edge0 + (uint32_t)(count - 1) * interval + width;
    last_onset_valid_ = 1; last_onset_us_ = edge0;
    onsets_[onset_head_] = edge0;
    onset_head_ = (uint8_t)((onset_head_ + 1) % MAX_RATE_PER_S);
    if (n_onsets_ < MAX_RATE_PER_S) n_onsets_++;
    ack(now, edge0);
  }
};

}  // namespace stimbox

#endif  // STIMBOX_CORE_H
