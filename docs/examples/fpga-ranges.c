/* SPDX-License-Identifier: MIT */
/*
 * fpga-ranges: asks an fpga pool for device address ranges under the
 * placement constraints a DMA engine has, and checks what it got.
 *
 *   fpga-ranges [POOL]       (default pool: fpga0, one of allocd's built-in pools)
 *
 * Four 3 MiB buffers, each aligned to 1 MiB and not crossing a 16 MiB
 * boundary (say, a descriptor's address bits), inside the first 4 GiB of the
 * pool's window; then one 64 KiB ring at an address = 4 KiB mod 64 KiB.
 */
#include <alloc/client.h>
#include <inttypes.h>
#include <stdio.h>

#define MiB (1ull << 20)

int main(int argc, char **argv) {
        const char *pool = argc > 1 ? argv[1] : "fpga0";
        struct alloc_client *c;
        struct alloc_region buf[4], ring;
        int bad = 0;

        if (alloc_connect(&c, NULL, "fpga-ranges") < 0) {
                fprintf(stderr, "fpga-ranges: %s\n", alloc_last_error());
                return 1;
        }
        struct alloc_opts dma = {.align = MiB, .boundary = 16 * MiB, .low = 0x100000000, .high = 0x200000000};
        for (int i = 0; i < 4; i++) {
                if (alloc_region_new(c, pool, 3 * MiB, &dma, &buf[i]) < 0) {
                        fprintf(stderr, "fpga-ranges: buffer %d: %s\n", i, alloc_last_error());
                        return 1;
                }
                uint64_t a = buf[i].addr, end = a + buf[i].size - 1;
                bool ok = a % MiB == 0 && a / (16 * MiB) == end / (16 * MiB) && a >= dma.low && end < dma.high;
                printf("buffer %d: %#" PRIx64 "-%#" PRIx64 " %s\n", i, a, end, ok ? "ok" : "VIOLATES THE CONSTRAINTS");
                bad += !ok;
        }
        struct alloc_opts ring_opts = {.align = 64 << 10, .phase = 4 << 10};
        if (alloc_region_new(c, pool, 64 << 10, &ring_opts, &ring) < 0) {
                fprintf(stderr, "fpga-ranges: ring: %s\n", alloc_last_error());
                return 1;
        }
        bool ok = ring.addr % (64 << 10) == 4 << 10;
        printf("ring:     %#" PRIx64 " %s\n", ring.addr, ok ? "ok" : "VIOLATES THE CONSTRAINTS");
        bad += !ok;
        /* Freeing is optional: disconnecting gives every range back. */
        alloc_disconnect(c);
        return bad ? 1 : 0;
}
