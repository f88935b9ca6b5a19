/* SPDX-License-Identifier: MIT */
#ifndef FUZZ_FUZZ_STATE_H
#define FUZZ_FUZZ_STATE_H

/* The core fuzz-state reads each input into (gen-state-seeds writes its seeds from one): fpga pools a and b. */
struct core *fuzz_state_core(void);

#endif
