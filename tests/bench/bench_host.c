/* bench_host.c: the host's memory floor and the plain fp32 GEMV beside it (issue 13's
 * reference numbers), on this machine's cores.
 *
 *   bench_host [--mb N] [--reps R]
 *
 * copy: memcpy of an N-MiB buffer (default 1024), bandwidth counting the bytes read and
 *   the bytes written, median of R runs (pages touched first, so no fault is timed); by one
 *   thread, then split over every online core (the floor a multi-core kernel is held to).
 * sgemv: OpenBLAS cblas_sgemv, y = W x at 4096 x 4096 fp32, rotating over enough
 *   matrices (64 MiB each) to pass --rotate-mb (default: 128 MiB or twice this CPU's L3,
 *   whichever is larger), so that each call streams its W from DRAM;
 *   the median time of one call and the bandwidth of its matrix bytes, with the fraction
 *   of the copy bandwidth. */
#include <cblas.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void *alloc_touched(size_t bytes) {
  unsigned char *p = malloc(bytes);
  if (!p) {
    fprintf(stderr, "bench_host: cannot allocate %zu MiB\n", bytes >> 20);
    exit(1);
  }
  memset(p, 1, bytes);
  return p;
}

typedef struct { unsigned char *dst; const unsigned char *src; size_t bytes; } Slice;

static void *copy_slice(void *arg) {
  Slice *s = arg;
  memcpy(s->dst, s->src, s->bytes);
  return NULL;
}

/* memcpy split into nthreads slices, one per thread (this one takes the first). */
static void copy_split(unsigned char *dst, const unsigned char *src, size_t bytes, int nthreads) {
  Slice s[64];
  pthread_t th[64];
  size_t per = (bytes / (size_t)nthreads + 4095) & ~(size_t)4095;
  int started = 0;
  for (int i = 0; i < nthreads; i++) {
    size_t off = (size_t)i * per, len = off >= bytes ? 0 : bytes - off < per ? bytes - off : per;
    s[i] = (Slice){dst + off, src + off, len};
  }
  for (int i = 1; i < nthreads; i++)
    if (pthread_create(&th[i], NULL, copy_slice, &s[i]) == 0) started = i;
    else copy_slice(&s[i]);
  copy_slice(&s[0]);
  for (int i = 1; i <= started; i++) pthread_join(th[i], NULL);
}

/* Copy bandwidth in GB/s (1e9), read plus write, by nthreads threads. */
static double copy_bandwidth(size_t bytes, int reps, int nthreads) {
  unsigned char *src = alloc_touched(bytes), *dst = alloc_touched(bytes);
  double *t = malloc(sizeof *t * (size_t)reps);
  if (!t) exit(1);
  copy_split(dst, src, bytes, nthreads); /* warm: the TLB and the page tables */
  for (int r = 0; r < reps; r++) {
    double t0 = now_s();
    copy_split(dst, src, bytes, nthreads);
    t[r] = now_s() - t0;
  }
  double s = median(t, reps);
  free(t), free(src), free(dst);
  return 2.0 * (double)bytes / s / 1e9;
}

/* The median seconds of one 4096 x 4096 sgemv, W rotating over nmat matrices. */
static double sgemv_seconds(int n, int nmat, int reps) {
  size_t elems = (size_t)n * (size_t)n;
  float **w = malloc(sizeof *w * (size_t)nmat);
  float *x = alloc_touched(sizeof(float) * (size_t)n), *y = alloc_touched(sizeof(float) * (size_t)n);
  if (!w) exit(1);
  /* Every element a normal float in [-0.5, 0.5): the memset pattern alone is ~2e-38, whose
   * products are denormal and would time the FPU's microcode assists, not the memory. */
  uint32_t state = 1;
  for (int m = 0; m < nmat; m++) {
    w[m] = alloc_touched(sizeof(float) * elems);
    for (size_t i = 0; i < elems; i++) w[m][i] = (float)((state = state * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
  }
  for (int i = 0; i < n; i++) x[i] = (float)((state = state * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
  int calls = reps * nmat;
  double *t = malloc(sizeof *t * (size_t)calls);
  if (!t) exit(1);
  for (int m = 0; m < nmat; m++) /* warm: OpenBLAS's threads */
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n, n, 1.0f, w[m], n, x, 1, 0.0f, y, 1);
  for (int c = 0; c < calls; c++) {
    double t0 = now_s();
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n, n, 1.0f, w[c % nmat], n, x, 1, 0.0f, y, 1);
    t[c] = now_s() - t0;
  }
  double s = median(t, calls);
  for (int m = 0; m < nmat; m++) free(w[m]);
  free(w), free(x), free(y), free(t);
  return s;
}

int main(int argc, char **argv) {
  size_t mb = 1024, rotate_mb = 0;
  int reps = 9;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--mb") && i + 1 < argc) {
      mb = (size_t)strtoul(argv[++i], NULL, 10);
    } else if (!strcmp(argv[i], "--rotate-mb") && i + 1 < argc) {
      rotate_mb = (size_t)strtoul(argv[++i], NULL, 10);
    } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = atoi(argv[++i]);
    } else {
      fprintf(stderr, "usage: bench_host [--mb N] [--reps R] [--rotate-mb N]\n%s\n",
              strcmp(argv[i], "--help") ? "bench_host: unknown option" : "");
      return strcmp(argv[i], "--help") ? 1 : 0;
    }
  }
  if (mb < 16 || reps < 1) {
    fprintf(stderr, "bench_host: --mb must be at least 16 and --reps at least 1\n");
    return 1;
  }
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  int nthreads = cores < 1 ? 1 : cores > 64 ? 64 : (int)cores;
  double bw1 = copy_bandwidth(mb << 20, reps, 1), bw = copy_bandwidth(mb << 20, reps, nthreads);
  printf("copy %zu MiB: %.2f GB/s by 1 thread, %.2f GB/s by %d (read + write, median of %d)\n", mb, bw1, bw,
         nthreads, reps);
  if (bw1 > bw) bw = bw1;

  const int n = 4096;
  const size_t mat = (size_t)n * n * sizeof(float);
  if (!rotate_mb) { /* past the last-level cache: a 480 MiB L3 would hold 128 MiB of matrices */
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    size_t twice_l3_mb = l3 > 0 ? (size_t)l3 >> 19 : 0;
    rotate_mb = twice_l3_mb > 128 ? twice_l3_mb : 128;
  }
  int nmat = (int)((rotate_mb << 20) / mat) + 1;
  double s = sgemv_seconds(n, nmat, reps);
  double gbs = (double)mat / s / 1e9;
  printf("sgemv %dx%d fp32 (OpenBLAS, %d threads, rotating %d matrices, %zu MiB): %.1f us, "
         "%.2f GB/s of W, %.0f%% of copy\n",
         n, n, openblas_get_num_threads(), nmat, (size_t)nmat * mat >> 20, s * 1e6, gbs, 100.0 * gbs / bw);
  return 0;
}
