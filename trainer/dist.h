/* dist.h: the pieces of data-parallel training that need no GPU of their own.
 *  - NCCL, loaded with dlopen as the driver is (nccl.c): the toolkit's, the system's,
 *    or the copy PyTorch bundles (the device machine, where nothing can be installed);
 *  - the rendezvous (rendezvous.c): every rank meets rank 0 at an address and port
 *    over TCP and receives NCCL's unique id from it, so that ranks on other hosts can
 *    join as well as processes of one host;
 *  - the gradient buckets (buckets.c): the trainable tensors, in the order the backward
 *    pass finishes their gradients, cut into all-reduce buckets of about a size.
 * Nothing here starts a process or touches a GPU. */
#ifndef RABIT_TRAINER_DIST_H
#define RABIT_TRAINER_DIST_H

#include <stddef.h>

#include "ir/base.h"

/* ---- NCCL (nccl.c) ---- */

enum { TR_NCCL_ID_BYTES = 128 }; /* NCCL_UNIQUE_ID_BYTES */

typedef struct TrNccl TrNccl;

/* Load libnccl.so.2: $RABIT_NCCL (a path) when set, else the dynamic loader's search,
 * the CUDA toolkit's lib64 (RABIT_CUDA_HOME, CUDA_HOME, /usr/local/cuda), and the
 * nvidia/nccl/lib of each python3 site-packages found; resolves the entry points
 * training uses. RB_EUSER with every place tried when none loads ("NCCL is missing"). */
int tr_nccl_open(TrNccl **out, RbBuf *err);
void tr_nccl_close(TrNccl *n);
const char *tr_nccl_path(const TrNccl *n); /* the file that loaded */
int tr_nccl_version(const TrNccl *n);      /* e.g. 22805 for 2.28.5 */
/* ncclGetUniqueId: rank 0 makes it and the rendezvous hands it out. */
int tr_nccl_unique_id(TrNccl *n, unsigned char id[TR_NCCL_ID_BYTES], RbBuf *err);

/* ---- the rendezvous (rendezvous.c) ---- */

typedef struct {
  const char *host; /* rank 0's address (a name or a numeric one); rank 0 listens on it */
  int port;
  int rank, world;
  double timeout_s; /* the whole meeting, from the call: a rank that never comes is an error, not a hang */
} TrRendezvous;

/* Rank 0 accepts the world - 1 others (each says its rank and the world it expects;
 * a duplicate rank, a rank outside the world or a different world is refused with the
 * reason) and sends each id; every other rank connects (retrying until the timeout,
 * since rank 0 may start later) and receives id, waiting a grace second past the
 * timeout for the answer so that it hears why rank 0 gave up. Every rank returns
 * after all have met. RB_EUSER with a message naming the address and what went wrong. */
int tr_rendezvous(const TrRendezvous *r, unsigned char id[TR_NCCL_ID_BYTES], RbBuf *err);

/* ---- the gradient buckets (buckets.c) ---- */

typedef struct {
  int first, count; /* tensors first .. first + count - 1, in the order given */
  size_t bytes;
} TrBucket;

/* Cut n tensors (their gradients' sizes, in the order the backward finishes them) into
 * consecutive buckets: each takes tensors while the total stays within cap, and a
 * tensor larger than cap is a bucket alone. Returns the count, the buckets in *out
 * (rb_free), or -1 when out of memory. */
int tr_bucket_plan(const size_t *bytes, int n, size_t cap, TrBucket **out);

#endif
