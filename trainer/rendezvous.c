/* rendezvous.c: every rank of a data-parallel run meets rank 0 over TCP and
 * receives NCCL's unique id from it (dist.h). The same code serves processes of
 * one host (127.0.0.1) and ranks on several hosts (rank 0's address).
 *
 * The wire, all integers big-endian:
 *   hello  (rank > 0 -> rank 0): "RBDP", version 1, rank, world       (16 bytes)
 *   answer (rank 0 -> rank > 0): status (0 = ok), then 128 bytes: the id, or
 *                                the reason for the refusal, NUL-terminated
 * Rank 0 answers nobody until all world - 1 have said hello, so every rank
 * returns from tr_rendezvous after the whole world has met. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "trainer/dist.h"

enum { HELLO_BYTES = 16, ANSWER_BYTES = 4 + TR_NCCL_ID_BYTES, VERSION = 1 };

static void put32(unsigned char *p, uint32_t v) { p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v; }
static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static double left_ms(double deadline) {
  double l = deadline - rb_now_ms();
  return l > 0 ? l : 0;
}

/* Wait until fd is ready for events or the deadline. 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, double deadline) {
  for (;;) {
    struct pollfd p = {fd, events, 0};
    int r = poll(&p, 1, (int)left_ms(deadline) + 1);
    if (r < 0 && errno == EINTR) continue;
    return r > 0 ? 1 : r;
  }
}

/* Move all n bytes before the deadline. 0 done, -1 failed or timed out (errno says which: ETIMEDOUT). */
static int io_all(int fd, unsigned char *buf, size_t n, int sending, double deadline) {
  for (size_t done = 0; done < n;) {
    int w = wait_fd(fd, sending ? POLLOUT : POLLIN, deadline);
    if (w <= 0) {
      if (w == 0) errno = ETIMEDOUT;
      return -1;
    }
    ssize_t r = sending ? send(fd, buf + done, n - done, MSG_NOSIGNAL) : recv(fd, buf + done, n - done, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (r == 0) errno = ECONNRESET; /* the other side closed */
      return -1;
    }
    done += (size_t)r;
  }
  return 0;
}

static struct addrinfo *resolve(const TrRendezvous *r, int passive, RbBuf *err) {
  char port[16];
  snprintf(port, sizeof port, "%d", r->port);
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_family = AF_UNSPEC, hints.ai_socktype = SOCK_STREAM, hints.ai_flags = passive ? AI_PASSIVE : 0;
  int e = getaddrinfo(r->host, port, &hints, &ai);
  if (e) {
    rb_buf_printf(err, "rendezvous: cannot resolve %s:%d: %s", r->host, r->port, gai_strerror(e));
    return NULL;
  }
  return ai;
}

/* Rank 0's refusal of a hello: said to that rank, and the whole rendezvous fails. */
static int refuse(int fd, double deadline, RbBuf *err, const char *host, int port, const char *why) {
  unsigned char a[ANSWER_BYTES] = {0};
  put32(a, 1);
  snprintf((char *)a + 4, TR_NCCL_ID_BYTES, "%s", why);
  io_all(fd, a, sizeof a, 1, deadline);
  rb_buf_printf(err, "rendezvous at %s:%d: %s", host, port, why);
  return RB_EUSER;
}

static int serve(const TrRendezvous *r, const unsigned char *id, RbBuf *err) {
  struct addrinfo *ai = resolve(r, 1, err);
  if (!ai) return RB_EUSER;
  double deadline = rb_now_ms() + r->timeout_s * 1e3;
  int ls = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol), one = 1, rc = RB_OK;
  if (ls >= 0) setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ls < 0 || bind(ls, ai->ai_addr, ai->ai_addrlen) || listen(ls, r->world)) {
    rb_buf_printf(err, "rendezvous: rank 0 cannot listen on %s:%d: %s", r->host, r->port, strerror(errno));
    freeaddrinfo(ai);
    if (ls >= 0) close(ls);
    return RB_EUSER;
  }
  freeaddrinfo(ai);
  int *fds = rb_malloc((size_t)r->world * sizeof *fds), met = 0; /* fds[rank]: -1 until it says hello */
  if (!fds) return close(ls), RB_EINTERNAL;
  for (int i = 0; i < r->world; i++) fds[i] = -1;
  while (met < r->world - 1 && rc == RB_OK) {
    int w = wait_fd(ls, POLLIN, deadline);
    if (w <= 0) {
      RbBuf missing = {0};
      for (int i = 1; i < r->world; i++)
        if (fds[i] < 0) rb_buf_printf(&missing, "%s%d", missing.len ? ", " : "", i);
      rb_buf_printf(err, "rendezvous at %s:%d: %d of the %d other ranks came within %.1f s (missing: rank %s)",
                    r->host, r->port, met, r->world - 1, r->timeout_s, missing.data ? missing.data : "?");
      rb_buf_free(&missing);
      rc = RB_EUSER;
      break;
    }
    int c = accept(ls, NULL, NULL);
    if (c < 0) continue;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    unsigned char h[HELLO_BYTES];
    if (io_all(c, h, sizeof h, 0, deadline)) { /* a connection that never says hello: ignored */
      close(c);
      continue;
    }
    int version = (int)get32(h + 4), rank = (int)get32(h + 8), world = (int)get32(h + 12);
    char why[TR_NCCL_ID_BYTES];
    why[0] = 0;
    if (memcmp(h, "RBDP", 4) != 0 || version != VERSION)
      snprintf(why, sizeof why, "a connection that is not a rabit rank (or of another version) came");
    else if (world != r->world)
      snprintf(why, sizeof why, "rank %d expects a world of %d, rank 0 one of %d", rank, world, r->world);
    else if (rank < 1 || rank >= r->world)
      snprintf(why, sizeof why, "rank %d is outside the world of %d", rank, r->world);
    else if (fds[rank] >= 0)
      snprintf(why, sizeof why, "rank %d came twice", rank);
    if (why[0]) {
      rc = refuse(c, deadline, err, r->host, r->port, why);
      close(c);
      break;
    }
    fds[rank] = c, met++;
  }
  for (int i = 1; i < r->world; i++) {
    if (fds[i] < 0) continue;
    unsigned char a[ANSWER_BYTES] = {0};
    if (rc == RB_OK) {
      memcpy(a + 4, id, TR_NCCL_ID_BYTES);
    } else {
      put32(a, 1);
      snprintf((char *)a + 4, TR_NCCL_ID_BYTES, "rank 0 gave up: %.100s", err->data ? err->data : "?");
    }
    if (io_all(fds[i], a, sizeof a, 1, deadline) && rc == RB_OK) {
      rb_buf_printf(err, "rendezvous at %s:%d: rank %d left before it had the id: %s", r->host, r->port, i,
                    strerror(errno));
      rc = RB_EUSER;
    }
    close(fds[i]);
  }
  rb_free(fds);
  close(ls);
  return rc;
}

static int join(const TrRendezvous *r, unsigned char *id, RbBuf *err) {
  double deadline = rb_now_ms() + r->timeout_s * 1e3;
  int fd = -1, last = 0;
  while (fd < 0) { /* rank 0 may not listen yet: try again until the deadline */
    struct addrinfo *ai = resolve(r, 0, err);
    if (!ai) return RB_EUSER;
    for (struct addrinfo *p = ai; p && fd < 0; p = p->ai_next) {
      fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
      if (fd >= 0 && connect(fd, p->ai_addr, p->ai_addrlen)) last = errno, close(fd), fd = -1;
    }
    freeaddrinfo(ai);
    if (fd >= 0) break;
    if (left_ms(deadline) <= 0) {
      rb_buf_printf(err, "rendezvous: rank %d could not reach rank 0 at %s:%d within %.1f s: %s", r->rank, r->host,
                    r->port, r->timeout_s, strerror(last));
      return RB_EUSER;
    }
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  unsigned char h[HELLO_BYTES], a[ANSWER_BYTES];
  memcpy(h, "RBDP", 4);
  put32(h + 4, VERSION), put32(h + 8, (uint32_t)r->rank), put32(h + 12, (uint32_t)r->world);
  int rc = RB_OK;
  /* the answer may take a grace second past the timeout: rank 0 answers by its own
   * deadline at the latest, with the reason when it gives up, and that is worth hearing */
  if (io_all(fd, h, sizeof h, 1, deadline) || io_all(fd, a, sizeof a, 0, deadline + 1e3)) {
    rb_buf_printf(err, "rendezvous: rank %d at %s:%d: no answer from rank 0 within %.1f s (%s)", r->rank, r->host,
                  r->port, r->timeout_s, strerror(errno));
    rc = RB_EUSER;
  } else if (get32(a) != 0) {
    a[ANSWER_BYTES - 1] = 0;
    rb_buf_printf(err, "rendezvous: rank 0 at %s:%d refused rank %d: %s", r->host, r->port, r->rank, (char *)a + 4);
    rc = RB_EUSER;
  } else {
    memcpy(id, a + 4, TR_NCCL_ID_BYTES);
  }
  close(fd);
  return rc;
}

int tr_rendezvous(const TrRendezvous *r, unsigned char id[TR_NCCL_ID_BYTES], RbBuf *err) {
  if (r->world < 1 || r->rank < 0 || r->rank >= r->world || r->port < 1 || r->port > 65535 || !r->host) {
    rb_buf_printf(err, "rendezvous: rank %d of a world of %d at %s:%d is not a valid place in it", r->rank, r->world,
                  r->host ? r->host : "(no address)", r->port);
    return RB_EUSER;
  }
  if (r->world == 1) return RB_OK; /* alone: nobody to meet, id is rank 0's own */
  return r->rank == 0 ? serve(r, id, err) : join(r, id, err);
}
