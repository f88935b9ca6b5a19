/* SPDX-License-Identifier: MIT */
#ifndef FUZZ_FUZZ_STATE_H
#define FUZZ_FUZZ_STATE_H

/*
 * The core fuzz-state reads each input into (gen-state-seeds writes its seeds from one): fpga
 * pools a, b and c, or only the first npools of them.
 */
struct core *fuzz_state_core(void);
struct core *fuzz_state_core_pools(int npools);
/* Pool i of the three (a reload adding it, in a seed's story). */
void fuzz_state_add_pool(struct core *c, int i);

#endif
