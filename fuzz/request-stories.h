/* SPDX-License-Identifier: MIT */
#ifndef FUZZ_REQUEST_STORIES_H
#define FUZZ_REQUEST_STORIES_H

/* Stories of fuzz-request's seeds (request-stories.c), each writing one or more inputs. */

void heaps(void);
void batches(void);
void reclaiming(void);
void limits(void);
void spares(void);
void strings(void);

#endif
