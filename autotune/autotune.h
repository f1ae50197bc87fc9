/* autotune.h: the autotuner (prefix at_): the search space of a kernel's
 * schedules, the 3% rule that picks among measured candidates, the per-GPU
 * tuning database, and the tuner: a search loop over a backend that
 * compiles, validates and times (the GPU's, or a test's fake). It changes a
 * kernel's schedule, never its op. README.md in this folder documents the
 * knobs, the file format, the rule and the tuner. */
#ifndef RABIT_AUTOTUNE_H
#define RABIT_AUTOTUNE_H

#include <stddef.h>
#include <stdint.h>

#include "codegen/codegen.h"
#include "ir/base.h"
#include "runtime/cuda/gpu.h"
#include "runtime/jit/jit.h"

/* ==== space.c: the candidate schedules of one kernel ==== */

/* What the device allows, as the driver reports it (the tuner fills it from
 * cuDeviceGetAttribute). A field of 0 is unknown and prunes nothing. */
typedef struct {
  int regs_per_thread;   /* 255 on every GPU since Kepler */
  int regs_per_block;    /* CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: 65536 */
  int smem_per_block;    /* bytes a block may opt in to (the launch does): 232448 on the H200 */
  int threads_per_block; /* CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: 1024 */
  int sm_count;          /* CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: 132 on the H200 */
} AtLimits;

/* Why a candidate left the space, for the tuner's report and the tests. */
typedef enum {
  AT_PRUNE_THREADS, /* more threads per block than the device has */
  AT_PRUNE_SMEM,    /* more shared memory per block than the device gives */
  AT_PRUNE_REGS,    /* its loop-carried registers exceed the per-thread budget: it would spill */
  AT_PRUNE_SMS,     /* rows per block > 1 leaving over half the SMs without a block */
  AT_PRUNE_TARGET,  /* the target's geometry refused it (its own limits) */
  AT_NPRUNE
} AtPrune;

typedef struct {
  CgSchedule sched;
  unsigned threads, smem; /* per block, from the target's geometry */
  int regs;               /* loop-carried registers per thread, estimated; 0: not estimated */
} AtCandidate;

typedef struct {
  AtCandidate *c; /* c[0] is the default schedule */
  int n, cap;
  int pruned[AT_NPRUNE]; /* candidates removed, by reason */
} AtSpace;

/* The candidates of kernel k on target t, in the fixed order README.md
 * documents: the default first (the incumbent; kept whatever lim says, since
 * it is what runs untuned), then every combination of the knobs the target's
 * emitter honours for k's kind, pruned by lim (NULL: no device limits) and by
 * the target's geometry, so every candidate is one t->emit accepts. A kind
 * with no knobs (and any kind on a target with no table) has the default
 * alone. Returns RB_OK, RB_EUSER (the target refuses k's default, reason in
 * err) or RB_EINTERNAL. Free with at_space_free, on failure too. */
int at_space_build(const CgTarget *t, const CgKernel *k, const AtLimits *lim, AtSpace *out, RbBuf *err);
void at_space_free(AtSpace *s);

/* ==== choose.c: the 3% rule ==== */

/* A candidate faster than the incumbent by less than this is noise: it does
 * not replace it. Two tunings therefore agree, or differ only by pairs within it. */
#define AT_MARGIN 0.03

/* One candidate's measurement: its median time (us; not finite or <= 0: not
 * timed, e.g. it did not build) and whether its output matched the reference. */
typedef struct {
  double us;
  int valid;
  const char *what; /* its description, for the log; NULL: "candidate i" */
} AtTiming;

/* Visit t[0..n) in order (t[0] the default): the first valid timed candidate
 * is the incumbent, and a later one replaces it only when valid and at least
 * AT_MARGIN faster (us <= (1 - AT_MARGIN) * incumbent's). Each invalid
 * candidate gets a line in log ("... failed validation; never chosen").
 * Returns the chosen index, or -1 when no candidate is valid and timed.
 * The choice is within AT_MARGIN of the fastest valid candidate: every
 * candidate not taken was slower than 0.97 times an incumbent at least as
 * slow as the last. */
int at_choose(const AtTiming *t, int n, RbBuf *log);

/* One kernel's result in one tuning: the chosen candidate and its time. */
typedef struct {
  int choice;
  double us;
} AtPick;

/* Two tunings a[0..n) and b[0..n) of the same kernels agree when each kernel
 * chose the same candidate, or its two picks' times are within AT_MARGIN
 * (the faster above (1 - AT_MARGIN) times the slower): the rule lets noise
 * flip such a pair, never more. Returns the number of kernels that break
 * this, each named in why ("kernel i: ..."). */
int at_picks_disagree(const AtPick *a, const AtPick *b, int n, RbBuf *why);

/* ==== db.c: the tuning database ==== */

#define AT_DB_FORMAT "rabit-tune"
#define AT_DB_VERSION 1
#define AT_DB_FILE "tuning.json" /* its name in the kernel cache directory */
#define AT_DB_MAX_BYTES ((size_t)64 << 20)
#define AT_DB_MAX_RECORDS 65536 /* a GPU has a few hundred; more is not a database we wrote */

/* Where a measurement holds: the GPU, the exact target and the compiler. */
typedef struct {
  char device[128]; /* the driver's name: "NVIDIA H200" */
  char arch[16];    /* "sm_90" */
  char nvrtc[96];   /* the compiler's version: rt_nvrtc_id() */
} AtDevice;

/* One tuned kernel: keyed by device, op (at_op_describe) and batch bucket. */
typedef struct {
  AtDevice dev;
  char op[160];
  int batch;           /* the bucket's batch_max; the schedule's batch_max is this */
  CgSchedule sched;
  double us, default_us; /* the tuned schedule's time and the default's, us */
  char date[24];       /* UTC, "2025-06-01T12:00:00Z" */
} AtRecord;

typedef struct {
  AtRecord *r;
  int n, cap;
} AtDb;

typedef struct {
  int added, replaced, kept; /* records new to the database, that won, that lost */
} AtMerged;

/* A stable description of an op alone, the database's key: the kind, the
 * epilogue and every shape field the kernel is specialized on, never its
 * schedule: "linear+add N=4096 K=11008 k=2", "rmsnorm D=4096 eps=1e-05".
 * RB_EUSER when it does not fit AtRecord.op. */
int at_op_describe(const CgOp *op, char out[160]);
/* The record key of kernel k on dev. */
int at_record_key(const AtDevice *dev, const CgKernel *k, AtRecord *out);
/* "YYYY-MM-DDTHH:MM:SSZ" of a time_t-like seconds count since the epoch. */
void at_date_utc(long long seconds, char out[24]);

void at_db_free(AtDb *db);
/* Orders records by key (device, arch, compiler, op, batch): the file's order. */
int at_record_cmp(const AtRecord *a, const AtRecord *b);
/* The record with key's device, op and batch, or NULL. */
const AtRecord *at_db_lookup(const AtDb *db, const AtRecord *key);
/* Insert r, or replace the record with its key. RB_OK or RB_EINTERNAL. */
int at_db_put(AtDb *db, const AtRecord *r);
/* Import from into db. For a key both hold, the newer record wins (the later
 * date: a re-tune reflects the newer emitter and compiler); on the same date
 * the faster (smaller us) wins; a tie keeps db's. Times are never compared
 * across dates: they come from different runs, maybe different machines.
 * RB_OK or RB_EINTERNAL; *st (may be NULL) counts what happened. */
int at_db_merge(AtDb *db, const AtDb *from, AtMerged *st);

/* Parse a database from text[0..len) named path: RB_OK, or RB_EUSER with
 * "PATH: problem" in err (where the JSON breaks, by line, column and byte; a
 * truncated file; another format or version; a record's missing or
 * mistyped field, by record number). db is emptied first and left empty on
 * failure. RB_EINTERNAL out of memory. */
int at_db_parse(AtDb *db, const char *text, size_t len, const char *path, RbBuf *err);
/* Read and parse the file path (at most AT_DB_MAX_BYTES); an unreadable file
 * is RB_EUSER "PATH: cannot read: reason" with errno kept. */
int at_db_load(AtDb *db, const char *path, RbBuf *err);
/* The file's text: records sorted by key, one a line, so files diff well. */
void at_db_format(const AtDb *db, RbBuf *out);
/* Write db to path atomically (the durable write): readers see the old file
 * or the new one. RB_OK, RB_EUSER or RB_EINTERNAL with "PATH: step: reason". */
int at_db_save(const AtDb *db, const char *path, RbBuf *err);

/* The cache's database, AT_DB_FILE in the kernel cache directory
 * (rt_cache_dir): its path, rb_malloc'ed. RB_EUSER when no directory is set. */
int at_db_cache_path(char **out, RbBuf *err);
/* Load the cache's database at path for use: a missing file is an empty
 * database; a corrupted, truncated or stale one (another format version) is
 * ignored, as an empty database, and said in warn (a line the caller
 * prints) once per process and path: a compile of several files opens it
 * once each. Never fails but for RB_EINTERNAL (out of memory). */
int at_db_open(AtDb *db, const char *path, RbBuf *warn);

/* Change the database at path in place: under an exclusive lock on
 * "PATH.lock" (so two writers never lose each other's records), open it as
 * at_db_open does (a broken one is said in warn and replaced), let fn change
 * it, and save it when fn returns RB_OK. Returns fn's code, or the lock's or
 * the save's failure (message in err). */
typedef int (*AtDbEditFn)(AtDb *db, void *ctx, RbBuf *err);
int at_db_edit(const char *path, AtDbEditFn fn, void *ctx, RbBuf *warn, RbBuf *err);

/* ==== schedules.c: the compile pipeline's schedules from the databases ==== */

/* The shipped databases: every *.json file in this directory, records for
 * the GPUs the project tuned (autotune/shipped/h200.json). The build
 * compiles in the source tree's autotune/shipped (AT_SHIPPED_DIR, a CMake
 * definition); $RABIT_SHIPPED_DIR, when set, names another one (an install,
 * a test). */
const char *at_shipped_dir(void);

/* Fill dev for the GPU named name (the driver's: "NVIDIA H200") and arch,
 * with this process's compiler (rt_nvrtc_id()). RB_EUSER, the reason in err,
 * for an empty name or one or an arch too long for the key. */
int at_device_init(AtDevice *dev, const char *name, const char *arch, RbBuf *err);

/* What the compile's schedule hook reads: the tuned records (the cache's
 * database) and the shipped ones, for one device. */
typedef struct {
  AtDevice dev;
  AtDb tuned, shipped;
} AtSchedules;

/* Load the databases for dev: tuned_path (NULL: the cache's, at_db_cache_path;
 * none when there is no cache directory) and every *.json in shipped_dir
 * (NULL: at_shipped_dir(); a missing directory ships nothing). A missing
 * file is empty; a broken one is ignored and said once per process and file
 * in warn, as at_db_open does. Never fails but for RB_EINTERNAL (out of
 * memory). Free with at_schedules_free, on failure too. */
int at_schedules_open(AtSchedules *s, const AtDevice *dev, const char *tuned_path, const char *shipped_dir,
                      RbBuf *warn);
void at_schedules_free(AtSchedules *s);

/* The pipeline's schedule hook (RtScheduleFn; ctx an AtSchedules): kernel
 * k's schedule from the record of its key (at_record_key on the device): the
 * tuned record, else the shipped one, else none (CG_FROM_DEFAULT, *out
 * untouched). The pipeline checks what it returns against the target. */
CgScheduleSource at_schedule_pick(void *ctx, const CgKernel *k, CgSchedule *out);

/* ==== units.c: what a tuning measures ==== */

#define AT_MAX_BATCH 8 /* batches one tuning names (--batch) */

/* One kernel at its batch bucket, measured at the tuned batches the bucket
 * serves: the bucket's schedule runs all of them, so its time is their mean. */
typedef struct {
  CgKernel kernel;                 /* the selected kernel: the bucket's default schedule */
  int nbatch, batch[AT_MAX_BATCH]; /* ascending, each served by the bucket */
  uint64_t weight_bytes;           /* the packed weights a launch reads: the layout's bits, g and h */
  uint64_t row_bytes;              /* activation bytes per batch row: x, y (and res for linear_add) */
} AtUnit;

/* The units of a model's kernels ks on target t for batches[0..nb) (each
 * 1..2^20): every linear kernel whose bucket serves one of them (the
 * smallest bucket whose batch_max holds it, the last for larger batches),
 * in the set's order. Kernels of other kinds have no knobs and none. *out
 * rb_malloc'ed (NULL when *n is 0). RB_OK or RB_EINTERNAL. */
int at_units_from_kernels(const CgTarget *t, const CgKernelSet *ks, const int *batches, int nb, AtUnit **out,
                          int *n);
/* The bytes a launch at batch must move at least: the read floor's numerator. */
uint64_t at_unit_floor_bytes(const AtUnit *u, int batch);
/* A schedule in a few words for logs and tables: "xor tile=1,4,0,8". */
void at_schedule_describe(const CgSchedule *s, char out[48]);

/* ==== validate.c: fresh random data of a linear and its CPU reference ==== */

/* One linear op's inputs, drawn fresh (random signs, g, h, x and res, never
 * zeros) in the canonical packed format and as fp16, and the reference
 * output (codegen/reference.c) of the rows a check compares. */
typedef struct {
  CgOp op;
  int max_batch, ntot, nout;
  uint32_t *bits[CG_MAX_SEG];  /* canonical (paths, N[s], ceil(K/32)) */
  uint16_t *g16;               /* (paths, Ntot): the kernel's g, segments concatenated */
  uint16_t *h16;               /* (nseg, paths, K) */
  uint16_t *x16, *res16;       /* (max_batch, K), (max_batch, Ntot) */
  float *g[CG_MAX_SEG], *h, *x, *res; /* the same, as the fp16 values in float */
  int nrows, *rows;            /* the rows with a reference, ascending */
  double *ref;                 /* (nrows, nout) */
} AtLinearData;

/* Draw op's data for batches up to max_batch from seed, and compute the
 * reference of every row, or (past about 1.5e8 multiply-adds) of a spread
 * of rows that holds the first and the last row of each batch in
 * batches[0..nb). RB_OK or RB_EINTERNAL. Free with at_linear_data_free. */
int at_linear_data_make(AtLinearData *d, const CgOp *op, int max_batch, const int *batches, int nb, uint64_t seed);
void at_linear_data_free(AtLinearData *d);
/* Check a kernel's fp16 output y (batch, nout) under schedule s against the
 * reference: no NaN anywhere (outputs are poisoned before a launch), and the
 * relative L2 error of the reference rows below batch within
 * cg_ref_linear_tolerance. Returns 1 when it passes; else 0 with the reason
 * in why. *err (may be NULL) gets the error. */
int at_linear_data_check(const AtLinearData *d, const CgSchedule *s, const uint16_t *y, int batch, double *err,
                         RbBuf *why);

/* ==== tune.c: the search loop, over a backend ==== */

/* What measures candidates: the GPU (measure.c), or a test's fake. Every
 * call returns RB_OK, or RB_EINTERNAL for a failure that ends the tuning (a
 * driver error), its message in log; a candidate that does not build or
 * computes the wrong thing is a result (ok, valid), not a failure. */
typedef struct {
  void *ctx;
  /* Prepare unit u, whose candidates are s->c[0..s->n): its fresh data and buffers. */
  int (*begin)(void *ctx, const AtUnit *u, const AtSpace *s, RbBuf *log);
  /* Build candidates [from, to) of the unit begun, in parallel; ok[i - from]
   * says which did (a failure's reason goes to log). */
  int (*compile)(void *ctx, int from, int to, int *ok, RbBuf *log);
  /* Run candidate i at every batch of the unit on the fresh data and compare
   * with the reference: *valid, with the reason in log when 0. broken is the
   * test hook: run the candidate deliberately wrong. */
  int (*validate)(void *ctx, int i, int broken, int *valid, RbBuf *log);
  /* The graph harness's median time of one launch of candidate i at batch, in us. */
  int (*time)(void *ctx, int i, int batch, double *us, RbBuf *log);
  void (*end)(void *ctx); /* the unit's buffers and modules go */
  double (*now)(void *ctx); /* seconds, for the budget */
} AtBackend;

/* Where the search stands, for a progress bar. */
typedef struct {
  int unit, nunit;     /* 0-based */
  const AtUnit *u;
  int cand, ncand;     /* the candidate just visited, of the unit's space */
  int compiling;       /* candidates cand..compile_to-1 are being built (nothing visited yet) */
  int compile_to;
  int best;            /* the incumbent of the 3% rule so far; -1: none */
  double best_us, default_us; /* their mean times; NaN: not timed */
  int done;            /* the unit is finished */
  int budget_stopped;  /* it stopped before its last candidate: the budget */
} AtProgress;

typedef struct {
  double budget_s;     /* 0: none; else seconds for the whole tuning, shared out over the units left */
  int break_candidate; /* test hook: the candidate of this index in every unit runs broken; -1: none */
  int chunk;           /* candidates compiled together; 0: 32 */
  void (*progress)(void *ctx, const AtProgress *p); /* NULL: none */
  void *progress_ctx;
} AtTuneOptions;

/* One unit's search. */
typedef struct {
  AtSpace space;
  int visited;        /* candidates 0..visited-1 were visited (the budget may stop it early) */
  int budget_stopped;
  int *built, *valid; /* per candidate visited */
  double *us;         /* (space.n, nbatch): medians; NaN where not timed */
  AtTiming *t;        /* per candidate: the mean over the batches, for at_choose */
  char (*what)[48];   /* per candidate: at_schedule_describe */
  int choice;         /* at_choose over the visited; -1: none */
  int nfailed, ninvalid; /* candidates that did not build, that failed validation */
} AtUnitResult;

typedef struct {
  const AtUnit *u; /* borrowed */
  AtUnitResult *r;
  int n;
  RbBuf log;       /* every candidate that did not build or was wrong, and budget stops */
  double seconds;
} AtTuning;

/* Tune units[0..n) on b: for each, its space (at_space_build on t with
 * lim), compiled in chunks, then in the space's order each candidate
 * validated and, when right, timed at each of the unit's batches; the 3%
 * rule (at_choose) picks. The default (candidate 0) is always visited; with
 * a budget, a unit stops when its share (what is left, over the units left)
 * is spent, and keeps the best so far. RB_OK (out filled: free with
 * at_tuning_free, on failure too), RB_EUSER (the target refuses a default),
 * RB_EINTERNAL (the backend failed); the reason in err. */
int at_tune(const AtBackend *b, const CgTarget *t, const AtLimits *lim, const AtUnit *units, int n,
            const AtTuneOptions *o, AtTuning *out, RbBuf *err);
void at_tuning_free(AtTuning *tu);
/* Each unit's choice and its time, for at_picks_disagree. */
void at_tuning_picks(const AtTuning *tu, AtPick *out);
/* The database records of tu on dev dated date: one per unit whose choice
 * and default were both timed, keyed at the unit's bucket. RB_OK or RB_EINTERNAL. */
int at_tuning_records(const AtTuning *tu, const AtDevice *dev, const char *date, AtDb *out);

/* ==== report.c, plot.c: the final table and the SVG ==== */

/* The table, one row per unit and batch: kernel, batch, default us, tuned
 * us, speed-up, the read floor (at_unit_floor_bytes at bytes_per_s) and the
 * fraction of it the tuned kernel reaches; then a line naming the
 * bandwidth and where it came from (how: "measured ..." or "nominal ..."). */
void at_tuning_table(const AtTuning *tu, double bytes_per_s, const char *how, RbBuf *out);
/* The same as a plain SVG: per shape and batch, the default's, the tuned
 * and the floor's time, log scale. */
void at_tuning_svg(const AtTuning *tu, double bytes_per_s, const char *how, RbBuf *out);

/* ==== measure.c: the backend on a GPU ==== */

typedef struct AtGpu AtGpu;

/* The backend that measures on gpu: candidates emitted by t and built
 * through cache for the GPU's arch on jobs threads (rt_build_kernels; 0: the
 * online CPUs), validated against the reference (validate.c) on fresh
 * random data, timed with the graph harness (rt_time_launches) over weights
 * rotating past the L2. gpu and cache are borrowed. RB_OK or RB_EINTERNAL. */
int at_gpu_open(RtGpu *gpu, RtCache *cache, const CgTarget *t, int jobs, AtGpu **out);
void at_gpu_close(AtGpu *m);
AtBackend at_gpu_backend(AtGpu *m);
/* The device's limits for at_space_build, from the driver. */
int at_gpu_limits(RtGpu *gpu, AtLimits *out);
/* The bandwidth the read floor divides by: measured (a device-to-device copy
 * in a graph, bytes read and written), else the nominal one from the
 * driver's memory clock and bus width; how (n bytes) says which. RB_OK, or
 * RB_EINTERNAL when neither is known. */
int at_gpu_bandwidth(RtGpu *gpu, double *bytes_per_s, char *how, size_t n);

#endif
