/* SPDX-License-Identifier: MIT */
#ifndef ALLOC_IDS_H
#define ALLOC_IDS_H

/* Region ids in batches, for the client library and the core alike (no protobuf here). */

#include <stddef.h>
#include <stdint.h>

/* An id that appears twice among ids[0, n) (a batch names each region once), or 0; scratch holds n. */
uint64_t ids_first_duplicate(const uint64_t *ids, size_t n, uint64_t *scratch);

#endif
