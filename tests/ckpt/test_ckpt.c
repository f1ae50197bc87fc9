/* test_ckpt.c: training checkpoints (trainer/ckpt.c): a random checkpoint
 * reads back bitwise equal; a truncated file and a flipped byte in a tensor
 * or in the header are refused naming the file; an unwritable directory
 * fails cleanly; a write killed part way leaves the previous checkpoint whole.
 * usage: test_ckpt CASE */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/common/check.h"
#include "tests/common/rng.h"
#include "trainer/trainer.h"

static char dir[64];

/* A random checkpoint: fp32 state of two quantized weights, a u64 blob as
 * I64, an i32 and an odd-sized u8 one, random metadata. */
typedef struct {
  TrCkpt c;
  TrCkptTensor t[12];
  char names[12][64];
  void *data[12];
  uint64_t pos[3], rng[4];
  TrCkptPoint hist[40];
  const char *extra[4];
} Rand;

static void rand_fill(Rand *r, int seed) {
  memset(r, 0, sizeof *r);
  test_rng = 0x1234567ull + (uint64_t)seed * 7919;
  static const struct { const char *base; TrCkptPart part; RtDtype dt; int rank; int64_t s0, s1; } spec[] = {
      {"model.layers.0.self_attn.q_proj", TR_CKPT_W, RT_F32, 2, 64, 64},
      {"model.layers.0.self_attn.q_proj", TR_CKPT_G, RT_F32, 2, 2, 64},
      {"model.layers.0.self_attn.q_proj", TR_CKPT_H, RT_F32, 2, 2, 64},
      {"model.layers.0.self_attn.q_proj", TR_CKPT_W_MOM, RT_F32, 2, 64, 64},
      {"model.layers.0.self_attn.q_proj", TR_CKPT_G_M, RT_F32, 2, 2, 64},
      {"model.layers.0.self_attn.q_proj", TR_CKPT_G_V, RT_F32, 2, 2, 64},
      {"model.layers.1.mlp.down_proj", TR_CKPT_W, RT_F32, 2, 64, 160},
      {"model.layers.1.mlp.down_proj", TR_CKPT_H_M, RT_F32, 2, 1, 160},
      {"model.layers.1.mlp.down_proj", TR_CKPT_H_V, RT_F32, 2, 1, 160},
  };
  int n = 0;
  for (size_t i = 0; i < sizeof spec / sizeof *spec; i++, n++) {
    tr_ckpt_name(r->names[n], sizeof r->names[n], spec[i].base, spec[i].part);
    r->t[n] = (TrCkptTensor){r->names[n], spec[i].dt, spec[i].rank, {spec[i].s0, spec[i].s1}, NULL};
  }
  strcpy(r->names[n], "sampler.perm"); /* u64s as I64, odd count before it: alignment by layout */
  r->t[n] = (TrCkptTensor){r->names[n], RT_I64, 1, {37}, NULL};
  n++;
  strcpy(r->names[n], "step.counter");
  r->t[n] = (TrCkptTensor){r->names[n], RT_I32, 1, {3}, NULL};
  n++;
  strcpy(r->names[n], "odd.bytes");
  r->t[n] = (TrCkptTensor){r->names[n], RT_U8, 1, {13}, NULL};
  n++;
  for (int i = 0; i < n; i++) {
    size_t bytes = rt_dtype_size(r->t[i].dtype);
    for (int d = 0; d < r->t[i].rank; d++) bytes *= (size_t)r->t[i].shape[d];
    unsigned char *p = malloc(bytes);
    for (size_t j = 0; j < bytes; j++) p[j] = (unsigned char)rnd();
    r->t[i].data = r->data[i] = p;
  }
  for (int i = 0; i < 3; i++) r->pos[i] = rnd();
  for (int i = 0; i < 4; i++) r->rng[i] = rnd();
  for (int i = 0; i < 40; i++)
    r->hist[i] = (TrCkptPoint){(uint64_t)i * 10, (uint64_t)i * 40960, 10.0 * exp(-0.01 * i) + unif() * 1e-3,
                               i % 5 ? NAN : 9.0 * exp(-0.01 * i) + unif() / 3.0};
  r->extra[0] = "warmup", r->extra[1] = "20";
  r->extra[2] = "note \"quoted\"", r->extra[3] = "tab\there, ünïcode";
  r->c = (TrCkpt){.step = 390, .tokens_seen = 1597440, .data_pos = r->pos, .ndata_pos = 3, .rng = r->rng, .nrng = 4,
                  .opt = {.method = "rabit", .paths = 2, .lr_w = 1e-3, .lr_s = 1.0 / 3.0, .gamma = 100.0,
                          .seed = 0xfedcba9876543210ull, .tokens = 200000000, .batch = 8, .seq = 512,
                          .ir = "samples/tiny.ir", .weights = "/data/tiny.safetensors", .data = "shards/"},
                  .ir_hash = "xxh3-128:00112233445566778899aabbccddeeff", .model = "tiny",
                  .history = r->hist, .nhistory = 40, .tensors = r->t, .ntensors = n, .extra = r->extra, .nextra = 2};
}

static void rand_free(Rand *r) {
  for (int i = 0; i < 12; i++) free(r->data[i]);
}

/* memcmp, but an empty range is equal even when a pointer is NULL (memcmp may not take NULL). */
static int same_mem(const void *a, const void *b, size_t n) { return !n || (a && b && !memcmp(a, b, n)); }

static int same_str(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }
static int same_double(double a, double b) { return (isnan(a) && isnan(b)) || !memcmp(&a, &b, sizeof a); }

static void check_equal(const TrCkpt *a, const TrCkpt *b) {
  CHECK(b->version == TR_CKPT_VERSION, "version %d", b->version);
  CHECK(a->step == b->step && a->tokens_seen == b->tokens_seen, "step/tokens differ");
  CHECK(a->ndata_pos == b->ndata_pos && same_mem(a->data_pos, b->data_pos, sizeof *a->data_pos * (size_t)a->ndata_pos),
        "data_pos differs");
  CHECK(a->nrng == b->nrng && same_mem(a->rng, b->rng, sizeof *a->rng * (size_t)a->nrng), "rng differs");
  const TrCkptOptions *x = &a->opt, *y = &b->opt;
  CHECK(same_str(x->method, y->method) && x->paths == y->paths && same_double(x->lr_w, y->lr_w) &&
            same_double(x->lr_s, y->lr_s) && same_double(x->gamma, y->gamma) && x->seed == y->seed &&
            x->tokens == y->tokens && x->batch == y->batch && x->seq == y->seq && same_str(x->ir, y->ir) &&
            same_str(x->weights, y->weights) && same_str(x->data, y->data),
        "options differ");
  CHECK(same_str(a->ir_hash, b->ir_hash) && same_str(a->model, b->model), "ir hash / model differ");
  CHECK(a->nhistory == b->nhistory, "history has %d points, want %d", b->nhistory, a->nhistory);
  for (int i = 0; i < a->nhistory && i < b->nhistory; i++)
    CHECK(a->history[i].step == b->history[i].step && a->history[i].tokens == b->history[i].tokens &&
              same_double(a->history[i].train_loss, b->history[i].train_loss) &&
              same_double(a->history[i].val_loss, b->history[i].val_loss),
          "history point %d differs", i);
  CHECK(a->nextra == b->nextra, "%d extras, want %d", b->nextra, a->nextra);
  for (int i = 0; i < a->nextra; i++)
    CHECK(same_str(tr_ckpt_extra(b, a->extra[2 * i]), a->extra[2 * i + 1]), "extra '%s' differs", a->extra[2 * i]);
  CHECK(a->ntensors == b->ntensors, "%d tensors, want %d", b->ntensors, a->ntensors);
  for (int i = 0; i < a->ntensors && i < b->ntensors; i++) {
    const TrCkptTensor *s = &a->tensors[i], *t = &b->tensors[i];
    CHECK(!strcmp(s->name, t->name), "tensor %d is '%s', want '%s' (the caller's order)", i, t->name, s->name);
    const TrCkptTensor *f = tr_ckpt_find(b, s->name);
    CHECK(f == t, "tr_ckpt_find('%s') is not tensor %d", s->name, i);
    size_t bytes = rt_dtype_size(s->dtype);
    for (int d = 0; d < s->rank; d++) bytes *= (size_t)s->shape[d];
    CHECK(t->dtype == s->dtype && t->rank == s->rank && !memcmp(t->shape, s->shape, sizeof(int64_t) * (size_t)s->rank) &&
              same_mem(t->data, s->data, bytes),
          "tensor '%s' differs", s->name);
    CHECK((uintptr_t)t->data % rt_dtype_size(t->dtype) == 0, "tensor '%s' is not aligned in the mapping", s->name);
  }
  CHECK(!tr_ckpt_find(b, "nope"), "found a tensor that is not there");
}

static void path_in(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static void write_ok(const char *path, Rand *r) {
  RbBuf err = {0};
  CHECK(tr_ckpt_write(path, &r->c, &err) == RB_OK, "write failed: %s", err.data ? err.data : "");
  rb_buf_free(&err);
}

static void test_roundtrip(void) {
  char path[128];
  path_in(path, sizeof path, "a.ckpt");
  for (int seed = 0; seed < 3; seed++) {
    Rand r;
    rand_fill(&r, seed);
    if (seed == 2) r.c.nhistory = 0, r.c.ndata_pos = 0, r.c.nextra = 0, r.c.model = NULL, r.c.opt.method = NULL;
    write_ok(path, &r);
    TrCkpt c;
    RbBuf err = {0};
    CHECK(tr_ckpt_read(path, &c, &err) == RB_OK, "read failed: %s", err.data ? err.data : "");
    if (!err.len) check_equal(&r.c, &c);
    tr_ckpt_free(&c);
    rb_buf_free(&err);
    rand_free(&r);
  }
  /* Names PyTorch's safetensors loader would refuse are refused at write time. */
  Rand r;
  rand_fill(&r, 5);
  r.t[1].name = r.t[0].name;
  RbBuf err = {0};
  CHECK(tr_ckpt_write(path, &r.c, &err) == RB_EUSER && err.data && strstr(err.data, "two tensors are named"),
        "a duplicate name was written: %s", err.data ? err.data : "");
  rb_buf_free(&err);
  rand_free(&r);
}

/* Read path and expect RB_EUSER with the path and want in the message. */
static void expect_refused(const char *path, const char *what, const char *want) {
  TrCkpt c;
  RbBuf err = {0};
  int rc = tr_ckpt_read(path, &c, &err);
  CHECK(rc == RB_EUSER, "%s: read returned %d", what, rc);
  CHECK(err.data && strstr(err.data, path) && strstr(err.data, want), "%s: message '%s' lacks the path or '%s'", what,
        err.data ? err.data : "", want);
  CHECK(c.ntensors == 0 && c.own == NULL, "%s: something was loaded", what);
  printf("%s: %s\n", what, err.data ? err.data : "");
  rb_buf_free(&err);
}

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void test_truncated(void) {
  char path[128];
  path_in(path, sizeof path, "t.ckpt");
  Rand r;
  rand_fill(&r, 1);
  write_ok(path, &r);
  long size = file_size(path);
  CHECK(truncate(path, size - 100) == 0, "truncate");
  expect_refused(path, "cut in the data", "truncated");
  CHECK(truncate(path, 200) == 0, "truncate");
  expect_refused(path, "cut in the header", "truncated");
  CHECK(truncate(path, 3) == 0, "truncate");
  expect_refused(path, "cut in the length", "truncated");
  rand_free(&r);
}

static void flip(const char *path, long at) {
  FILE *f = fopen(path, "r+b");
  fseek(f, at, SEEK_SET);
  int c = fgetc(f);
  fseek(f, at, SEEK_SET);
  fputc(c ^ 0x10, f);
  fclose(f);
}

static void test_flipped_tensor(void) {
  char path[128];
  path_in(path, sizeof path, "f.ckpt");
  Rand r;
  rand_fill(&r, 2);
  write_ok(path, &r);
  flip(path, file_size(path) - 7); /* inside the last tensor */
  expect_refused(path, "flipped data byte", "checksum mismatch");
  write_ok(path, &r);
  flip(path, file_size(path) / 2);
  expect_refused(path, "flipped middle byte", "corrupted");
  rand_free(&r);
}

static void test_flipped_header(void) {
  char path[128];
  path_in(path, sizeof path, "h.ckpt");
  Rand r;
  rand_fill(&r, 3);
  write_ok(path, &r);
  /* A digit of "step": the JSON stays valid, only the checksum sees it. */
  RbBuf f = {0};
  rb_read_file(path, &f);
  const char *at = f.data ? strstr(f.data + 8, "\"390\"") : NULL; /* the header has no NUL before it */
  CHECK(at, "no step in the header");
  if (at) flip(path, (long)(at - f.data) + 1);
  expect_refused(path, "flipped step digit", "checksum mismatch");
  rb_buf_free(&f);
  /* A byte of the checksum itself. */
  write_ok(path, &r);
  flip(path, 8 + 40);
  expect_refused(path, "flipped checksum digit", "checksum mismatch");
  rand_free(&r);
}

static void test_unwritable(void) {
  Rand r;
  rand_fill(&r, 4);
  char path[160];
  /* A directory that does not exist, and a "directory" that is a file. */
  path_in(path, sizeof path, "missing/dir/a.ckpt");
  RbBuf err = {0};
  CHECK(tr_ckpt_write(path, &r.c, &err) == RB_EUSER && err.data && strstr(err.data, path), "missing dir: %s",
        err.data ? err.data : "");
  printf("missing dir: %s\n", err.data ? err.data : "");
  rb_buf_free(&err);
  char file[128];
  path_in(file, sizeof file, "plain");
  FILE *fp = fopen(file, "w");
  fclose(fp);
  snprintf(path, sizeof path, "%s/a.ckpt", file);
  CHECK(tr_ckpt_write(path, &r.c, &err) == RB_EUSER && err.data && strstr(err.data, path), "file as dir: %s",
        err.data ? err.data : "");
  rb_buf_free(&err);
  /* Read-only: only meaningful when not root (root writes anyway). */
  if (geteuid() != 0) {
    char ro[128];
    path_in(ro, sizeof ro, "ro");
    mkdir(ro, 0500);
    snprintf(path, sizeof path, "%s/a.ckpt", ro);
    CHECK(tr_ckpt_write(path, &r.c, &err) == RB_EUSER && err.data && strstr(err.data, "Permission denied"),
          "read-only dir: %s", err.data ? err.data : "");
    rb_buf_free(&err);
    CHECK(file_size(path) < 0, "something was written into the read-only dir");
    chmod(ro, 0700);
  }
  rand_free(&r);
}

/* A child writes a new checkpoint over the old one and is killed after
 * `after` bytes: the old one still reads back whole, nothing else at path. */
static void test_killed(void) {
  char path[128];
  path_in(path, sizeof path, "k.ckpt");
  Rand old;
  rand_fill(&old, 6);
  write_ok(path, &old);
  /* The new checkpoint's size, to kill its writer anywhere up to the last byte. */
  char probe[128];
  path_in(probe, sizeof probe, "k.new");
  Rand r;
  rand_fill(&r, 7);
  r.c.step = 400;
  write_ok(probe, &r);
  long total = file_size(probe);
  long long afters[] = {0, 100, total / 2, total - 1};
  for (size_t i = 0; i < sizeof afters / sizeof *afters; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      r.c.test_kill_after = &afters[i];
      tr_ckpt_write(path, &r.c, NULL);
      _exit(4); /* the hook should have killed us */
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork");
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the writer was not killed after %lld bytes", afters[i]);
    TrCkpt c;
    RbBuf err = {0};
    CHECK(tr_ckpt_read(path, &c, &err) == RB_OK, "after a kill at %lld bytes the old checkpoint is gone: %s",
          afters[i], err.data ? err.data : "");
    if (!err.len) check_equal(&old.c, &c);
    tr_ckpt_free(&c);
    rb_buf_free(&err);
  }
  rand_free(&r);
  rand_free(&old);
}

int main(int argc, char **argv) {
  const char *c = argc > 1 ? argv[1] : "";
  snprintf(dir, sizeof dir, "/tmp/rabit_ckpt_%s_%d", c, (int)getpid());
  mkdir(dir, 0700);
  if (!strcmp(c, "roundtrip")) test_roundtrip();
  else if (!strcmp(c, "truncated")) test_truncated();
  else if (!strcmp(c, "flipped_tensor")) test_flipped_tensor();
  else if (!strcmp(c, "flipped_header")) test_flipped_header();
  else if (!strcmp(c, "unwritable")) test_unwritable();
  else if (!strcmp(c, "killed")) test_killed();
  else CHECK(0, "unknown case '%s'", c);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0, "cleanup");
  return CHECK_SUMMARY();
}
