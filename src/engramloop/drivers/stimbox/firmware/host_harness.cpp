// Runs stimbox_core.h on a PC for the test suite (tests/test_stimbox_firmware.py), which
// compiles it with g++ and feeds it the same byte streams as the Python emulator.
//
//   g++ -std=c++11 -O1 -Wall -Wextra -Werror -I stimbox host_harness.cpp -o harness
//
// stdin, one step per line:   <device time, us, decimal> <bytes as hex, or ->
// stdout, per step:           R <reply bytes as hex, or ->
//                             E <channel> <edge_us> <index>      (one line per edge)
//                             .
// after the last line:        S <armed> <edges> <garbage> <crc> <gap> <length> <nacks>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stimbox_core.h"

static void on_output(uint8_t, uint8_t, uint16_t) {}
static void on_edge(uint8_t channel, uint32_t edge_us, uint16_t index) {
  printf("E %u %lu %u\n", (unsigned)channel, (unsigned long)edge_us, (unsigned)index);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int main() {
  stimbox::Core core(on_output, on_edge);
  static char line[1 << 16];
  while (fgets(line, sizeof line, stdin)) {
    char* sp = strchr(line, ' ');
    if (!sp) continue;
    *sp = 0;
    uint32_t now = (uint32_t)strtoul(line, 0, 10);
    core.tick(now);
    for (char* p = sp + 1; hexval(p[0]) >= 0 && hexval(p[1]) >= 0; p += 2)
      core.feed((uint8_t)(hexval(p[0]) * 16 + hexval(p[1])), now);
    core.tick(now);
    printf("R ");
    if (!core.tx_len) printf("-");
    for (uint16_t i = 0; i < core.tx_len; i++) printf("%02x", core.tx[i]);
    printf("\n.\n");
    core.tx_len = 0;
  }
  printf("S %u %lu %lu %lu %lu %lu %lu\n", (unsigned)core.armed, (unsigned long)core.edges,
         (unsigned long)core.garbage_bytes, (unsigned long)core.crc_errors,
         (unsigned long)core.gap_discards, (unsigned long)core.length_errors,
         (unsigned long)core.nacks);
  return 0;
}
