// Runs the stim-box firmware (the real AVR build, an .elf) on simavr's model of the MCU,
// so the test suite can talk to it over its UART and time its interrupts in cycles.
// Used by src/engramloop/drivers/stimbox/avr_sim.py; built there with
//
//   gcc -O2 -Wall -Wextra -Werror -I/usr/include/simavr simavr_harness.c -lsimavr -lelf
//
// Usage: simavr_harness <elf> <mcu> <timed ISR's vector-table byte address, hex> [-a]
//
// stdin, one step per line, times strictly increasing:
//     <time, cycles since reset> <bytes to send as hex, or ->
//   The MCU runs until that cycle, then the bytes go onto its RX line at the UART's own
//   byte rate (one byte per `cycles_per_byte` cycles, as a real 115200 baud line does).
//   A last line "<cycles> -" sets how long to run after the last bytes.
// stdout, as things happen:
//     U <cycle> <byte hex>            a byte the MCU transmitted (its TX line)
//     P <cycle> <port><bit> <level>   an output pin changed (TTL outputs, armed LED)
//     A <cycle> <OCR1AL>              with -a: the audio PWM compare value after each
//                                     run of the timed ISR that changed it
//   at the end:
//     H <cycles> <count>              how many runs of the timed ISR took that many cycles
//     C <cycle>                       the cycle the run stopped at
//
// An ISR's cycles are counted from the cycle its vector-table entry starts executing to
// the cycle its RETI has completed, as simavr accounts them, plus the 4-cycle interrupt
// response (ATmega328P/32U4 datasheets, "Interrupt Response Time": 4 cycles to push the
// program counter and jump to the vector) which simavr does not add to the cycle count.
// The counting happens between instructions, so the firmware runs unmodified.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avr_ioport.h"
#include "avr_timer.h"
#include "avr_uart.h"
#include "sim_avr.h"
#include "sim_elf.h"
#include "sim_irq.h"

#define RESPONSE_CYCLES 4
#define MAX_HIST 4096
#define RETI_OPCODE 0x9518

static avr_t* avr;
static unsigned long hist[MAX_HIST];

static void on_uart_out(struct avr_irq_t* irq, uint32_t value, void* param) {
  (void)irq; (void)param;
  printf("U %llu %02x\n", (unsigned long long)avr->cycle, value & 0xFF);
}

static void on_pin(struct avr_irq_t* irq, uint32_t value, void* param) {
  const char* name = (const char*)param;
  (void)irq;
  printf("P %llu %s %u\n", (unsigned long long)avr->cycle, name, value ? 1u : 0u);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static void watch_pin(char port, int bit) {
  static char names[32][4];
  static int n = 0;
  avr_irq_t* irq = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(port), bit);
  if (!irq || n >= 32) return;
  snprintf(names[n], sizeof names[n], "%c%d", port, bit);
  avr_irq_register_notify(irq, on_pin, names[n]);
  n++;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s <elf> <mcu> <isr vector address hex> [-a]\n", argv[0]);
    return 2;
  }
  const char* elf_path = argv[1];
  const char* mcu = argv[2];
  avr_flashaddr_t vector = (avr_flashaddr_t)strtoul(argv[3], 0, 16);
  int audio_trace = argc > 4 && strcmp(argv[4], "-a") == 0;

  elf_firmware_t fw;
  memset(&fw, 0, sizeof fw);
  if (elf_read_firmware(elf_path, &fw) != 0) {
    fprintf(stderr, "error: cannot read %s\n", elf_path);
    return 1;
  }
  avr = avr_make_mcu_by_name(mcu);
  if (!avr) {
    fprintf(stderr, "error: simavr has no core %s\n", mcu);
    return 1;
  }
  avr_init(avr);
  avr->frequency = 16000000;
  avr_load_firmware(avr, &fw);
  avr->log = LOG_WARNING;

  // the UART: no "poll sleep" (it would make the MCU wait in host time), no stdio echo
  uint32_t flags = 0;
  avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
  avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('1'), &flags);
  // Uno: Serial is USART0; Leonardo: Serial is USB, Serial1 (USART1) the pins
  char uart = strcmp(mcu, "atmega32u4") == 0 ? '1' : '0';
  avr_irq_t* uart_in = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ(uart), UART_IRQ_INPUT);
  avr_irq_t* uart_out = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ(uart), UART_IRQ_OUTPUT);
  if (!uart_in || !uart_out) {
    fprintf(stderr, "error: no UART %c on %s\n", uart, mcu);
    return 1;
  }
  avr_irq_register_notify(uart_out, on_uart_out, NULL);
  for (int b = 2; b <= 7; b++) watch_pin('D', b);   // Uno D2-D7
  watch_pin('B', 5);                                  // Uno D13 (armed LED)
  watch_pin('C', 7);                                  // Leonardo D13

  // 115200 baud, 10 bits a byte, at 16 MHz: 1389 cycles; a little slower than the
  // Arduino's actual 117647 baud (UBRR 16 with U2X) so the RX FIFO never overflows
  const avr_cycle_count_t cycles_per_byte = 1400;
  static char line[1 << 16];
  static uint8_t pending[1 << 15];
  size_t n_pending = 0, i_pending = 0;
  avr_cycle_count_t next_byte = 0, in_isr_since = 0;
  int in_isr = 0;
  uint8_t last_ocr = 0xFF;
  int done = 0;
  avr_cycle_count_t until = 0;

  while (!done) {
    if (i_pending == n_pending) {
      if (!fgets(line, sizeof line, stdin)) break;
      char* sp = strchr(line, ' ');
      if (!sp) continue;
      *sp = 0;
      until = strtoull(line, 0, 10);
      n_pending = i_pending = 0;
      for (char* p = sp + 1; hexval(p[0]) >= 0 && hexval(p[1]) >= 0; p += 2)
        pending[n_pending++] = (uint8_t)(hexval(p[0]) * 16 + hexval(p[1]));
      if (next_byte < until) next_byte = until;
    }
    // run to the next thing to do: the step's time, or the next byte on the wire
    avr_cycle_count_t target = i_pending < n_pending ? next_byte : until;
    while (avr->cycle < target || in_isr) {
      avr_flashaddr_t pc = avr->pc;
      int reti = in_isr && (avr->flash[pc] | (avr->flash[pc + 1] << 8)) == RETI_OPCODE;
      if (!in_isr && pc == vector) {
        in_isr = 1;
        in_isr_since = avr->cycle;
      }
      int state = avr_run(avr);
      if (state == cpu_Done || state == cpu_Crashed) {
        fprintf(stderr, "error: the MCU stopped (state %d) at cycle %llu\n", state,
                (unsigned long long)avr->cycle);
        return 1;
      }
      if (reti) {
        unsigned long c = (unsigned long)(avr->cycle - in_isr_since) + RESPONSE_CYCLES;
        hist[c < MAX_HIST ? c : MAX_HIST - 1]++;
        in_isr = 0;
        if (audio_trace && avr->data[0x88] != last_ocr) {
          last_ocr = avr->data[0x88];
          printf("A %llu %u\n", (unsigned long long)avr->cycle, last_ocr);
        }
      }
    }
    if (i_pending < n_pending) {
      avr_raise_irq(uart_in, pending[i_pending++]);
      next_byte += cycles_per_byte;
    }
  }
  for (int c = 0; c < MAX_HIST; c++)
    if (hist[c]) printf("H %d %lu\n", c, hist[c]);
  printf("C %llu\n", (unsigned long long)avr->cycle);
  return 0;
}
