/* test_dist.c: data-parallel training's CPU pieces (trainer/dist.h), no GPU:
 *   buckets     fresh random gradient sizes and caps: the buckets cover every
 *               tensor once, in order, each within the cap unless one tensor is
 *               larger, and none could have taken the next tensor;
 *   rendezvous  4 processes over loopback (the other ranks started before rank 0,
 *               so they retry) all receive rank 0's id; a world mismatch, a rank
 *               twice, a missing rank and an absent rank 0 end in errors naming
 *               the problem on every rank, within the timeout, never a hang;
 *   nccl        RABIT_NCCL at a missing file says NCCL is missing, naming it;
 *               the library this machine has (if any) loads and makes an id. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/common/check.h"
#include "tests/common/rng.h"
#include "trainer/dist.h"

static void test_buckets(void) {
  for (int trial = 0; trial < 200; trial++) {
    int n = 1 + (int)(rnd() % 300);
    size_t cap = 1 + rnd() % (64u << 20), *bytes = malloc((size_t)n * sizeof *bytes);
    for (int i = 0; i < n; i++) bytes[i] = 1 + rnd() % (rnd() % 4 ? cap : 3 * cap); /* some larger than cap */
    TrBucket *b = NULL;
    int nb = tr_bucket_plan(bytes, n, cap, &b), next = 0, ok = nb > 0;
    for (int j = 0; ok && j < nb; j++) {
      size_t sum = 0;
      for (int i = b[j].first; i < b[j].first + b[j].count; i++) sum += bytes[i];
      ok = b[j].first == next && b[j].count >= 1 && sum == b[j].bytes && (sum <= cap || b[j].count == 1);
      /* greedy: the next tensor would not have fitted */
      if (ok && j + 1 < nb) ok = b[j].bytes + bytes[b[j + 1].first] > cap;
      next = b[j].first + b[j].count;
    }
    CHECK(ok && next == n, "trial %d: %d tensors, cap %zu: the plan of %d buckets breaks a rule", trial, n, cap, nb);
    rb_free(b);
    free(bytes);
  }
  TrBucket *b = NULL;
  CHECK(tr_bucket_plan(NULL, 0, 100, &b) == 0 && !b, "no tensors: no buckets");
}

/* A free loopback port: bind port 0, read it back, let it go. */
static int free_port(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET, a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || getsockname(s, (struct sockaddr *)&a, &len)) return 0;
  close(s);
  return ntohs(a.sin_port);
}

/* One process a rank: each runs tr_rendezvous and writes its result on its pipe:
 * status, then the id (or the error, up to 256 bytes). delay_ms[rank] before it starts. */
typedef struct {
  int rc;
  unsigned char id[TR_NCCL_ID_BYTES];
  char err[256];
} Outcome;

static void meet(int nproc, const int *rank, const int *world, const int *delay_ms, double timeout_s,
                 const unsigned char *id0, Outcome *out) {
  int port = free_port(), fds[8];
  pid_t pid[8];
  for (int p = 0; p < nproc; p++) {
    int pipefd[2];
    if (pipe(pipefd)) exit(2);
    fds[p] = pipefd[0];
    if ((pid[p] = fork()) == 0) {
      close(pipefd[0]);
      struct timespec ts = {delay_ms[p] / 1000, (long)(delay_ms[p] % 1000) * 1000000L};
      nanosleep(&ts, NULL);
      Outcome o = {0};
      if (rank[p] == 0) memcpy(o.id, id0, TR_NCCL_ID_BYTES);
      RbBuf err = {0};
      TrRendezvous r = {"127.0.0.1", port, rank[p], world[p], timeout_s};
      o.rc = tr_rendezvous(&r, o.id, &err);
      snprintf(o.err, sizeof o.err, "%s", err.data ? err.data : "");
      ssize_t w = write(pipefd[1], &o, sizeof o);
      _exit(w == (ssize_t)sizeof o ? 0 : 3);
    }
    close(pipefd[1]);
  }
  for (int p = 0; p < nproc; p++) {
    memset(&out[p], 0, sizeof out[p]);
    out[p].rc = -1;
    if (read(fds[p], &out[p], sizeof out[p]) != (ssize_t)sizeof out[p]) out[p].rc = -1;
    close(fds[p]);
    waitpid(pid[p], NULL, 0);
  }
}

static void test_rendezvous(void) {
  unsigned char id[TR_NCCL_ID_BYTES];
  for (int i = 0; i < TR_NCCL_ID_BYTES; i++) id[i] = (unsigned char)rnd();
  Outcome o[4];
  { /* four ranks; ranks 1..3 first, rank 0 300 ms later */
    int rank[] = {0, 1, 2, 3}, world[] = {4, 4, 4, 4}, delay[] = {300, 0, 50, 100};
    double t0 = rb_now_ms();
    meet(4, rank, world, delay, 10, id, o);
    for (int p = 0; p < 4; p++)
      CHECK(o[p].rc == RB_OK && !memcmp(o[p].id, id, sizeof id), "rank %d: rc %d, %s", p, o[p].rc, o[p].err);
    CHECK(rb_now_ms() - t0 < 5000, "four ranks took %.0f ms to meet", rb_now_ms() - t0);
  }
  { /* rank 1 expects a world of 3, rank 0 one of 2 */
    int rank[] = {0, 1}, world[] = {2, 3}, delay[] = {0, 50};
    meet(2, rank, world, delay, 5, id, o);
    CHECK(o[0].rc == RB_EUSER && strstr(o[0].err, "expects a world of 3"), "world mismatch, rank 0: %s", o[0].err);
    CHECK(o[1].rc == RB_EUSER && strstr(o[1].err, "refused rank 1"), "world mismatch, rank 1: %s", o[1].err);
  }
  { /* rank 1 twice */
    int rank[] = {0, 1, 1}, world[] = {3, 3, 3}, delay[] = {0, 50, 100};
    meet(3, rank, world, delay, 5, id, o);
    CHECK(o[0].rc == RB_EUSER && strstr(o[0].err, "rank 1 came twice"), "duplicate rank, rank 0: %s", o[0].err);
    CHECK(o[1].rc == RB_EUSER && o[2].rc == RB_EUSER, "duplicate rank: the ranks 1 ended %d, %d (%s | %s)", o[1].rc,
          o[2].rc, o[1].err, o[2].err);
  }
  { /* rank 2 never comes: rank 0 names it after the timeout, rank 1 hears that */
    int rank[] = {0, 1}, world[] = {3, 3}, delay[] = {0, 0};
    double t0 = rb_now_ms();
    meet(2, rank, world, delay, 1.0, id, o);
    double ms = rb_now_ms() - t0;
    CHECK(o[0].rc == RB_EUSER && strstr(o[0].err, "missing: rank 2"), "missing rank, rank 0: %s", o[0].err);
    CHECK(o[1].rc == RB_EUSER && strstr(o[1].err, "gave up"), "missing rank, rank 1: %s", o[1].err);
    CHECK(ms > 900 && ms < 4000, "a missing rank: the ranks ended after %.0f ms (timeout 1 s)", ms);
  }
  { /* no rank 0 at all */
    int rank[] = {1}, world[] = {2}, delay[] = {0};
    meet(1, rank, world, delay, 0.5, id, o);
    CHECK(o[0].rc == RB_EUSER && strstr(o[0].err, "could not reach rank 0"), "no rank 0: %s", o[0].err);
  }
  RbBuf err = {0};
  TrRendezvous bad = {"127.0.0.1", 29500, 2, 2, 1};
  CHECK(tr_rendezvous(&bad, id, &err) == RB_EUSER && err.data && strstr(err.data, "not a valid place"),
        "rank 2 of 2: %s", err.data ? err.data : "(no message)");
  rb_buf_free(&err);
}

static void test_nccl(void) {
  RbBuf err = {0};
  TrNccl *n = NULL;
  setenv("RABIT_NCCL", "/nonexistent/libnccl.so.2", 1);
  CHECK(tr_nccl_open(&n, &err) == RB_EUSER && !n && err.data && strstr(err.data, "NCCL is missing") &&
            strstr(err.data, "/nonexistent/libnccl.so.2"),
        "a missing NCCL: %s", err.data ? err.data : "(no message)");
  unsetenv("RABIT_NCCL");
  rb_buf_free(&err);
  if (tr_nccl_open(&n, &err) != RB_OK) {
    printf("note: no NCCL on this machine, the load of a real one is not tested: %s\n", err.data ? err.data : "");
    rb_buf_free(&err);
    return;
  }
  printf("NCCL %d from %s\n", tr_nccl_version(n), tr_nccl_path(n));
  CHECK(tr_nccl_version(n) >= 20000, "NCCL version %d", tr_nccl_version(n));
  unsigned char id[TR_NCCL_ID_BYTES] = {0}, zero[TR_NCCL_ID_BYTES] = {0};
  if (tr_nccl_unique_id(n, id, &err) == RB_OK)
    CHECK(memcmp(id, zero, sizeof id) != 0, "ncclGetUniqueId gave an id of zeros");
  else
    printf("note: ncclGetUniqueId failed here (no GPU?): %s\n", err.data ? err.data : "");
  tr_nccl_close(n);
  rb_buf_free(&err);
}

int main(int argc, char **argv) {
  test_rng ^= (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull | 1; /* fresh sizes and ids each run */
  const char *only = argc > 1 ? argv[1] : NULL;
  if (!only || !strcmp(only, "buckets")) test_buckets();
  if (!only || !strcmp(only, "rendezvous")) test_rendezvous();
  if (!only || !strcmp(only, "nccl")) test_nccl();
  return CHECK_SUMMARY();
}
