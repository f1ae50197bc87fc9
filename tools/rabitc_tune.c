/* rabitc_tune.c: `rabitc tune`: the tuning database in the kernel cache
 * directory, shared between machines with --export FILE and --import FILE;
 * `rabitc tune MODEL.ir` measures the model's kernels on the GPU
 * (rabitc_tune_model.c) and says so plainly where there is none.
 * Exit codes: 0 ok, 1 user error (a broken import, bad usage), 2 internal error. */
#include <stdio.h>
#include <string.h>

#include "autotune/autotune.h"
#include "runtime/cuda/gpu.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/paths.h"

static const char help_head[] =
    "usage: rabitc tune --export FILE\n"
    "       rabitc tune --import FILE\n"
    "       rabitc tune MODEL.ir [--budget S] [--batch 1,4,16] [--plot OUT.svg] [--twice]\n"
    "\n"
    "The tuning database: per GPU (device name, arch, NVRTC version) and per kernel\n"
    "(op and batch bucket), the schedule that ran fastest, its time, the default's\n"
    "time and the date. It lives in the kernel cache directory as " AT_DB_FILE ".\n"
    "\n"
    "options:\n";
static const char help_tail[] =
    "\n"
    "--export writes the cache's database to FILE ('-' for stdout), atomically.\n"
    "--import merges FILE into it: for a kernel both hold, the newer record wins (the\n"
    "later date), on the same date the faster; a broken FILE changes nothing and exits 1.\n"
    "A corrupted, truncated or stale database in the cache is reported once and ignored.\n"
    "\n"
    "Tuning MODEL.ir needs a GPU. Each quantized linear kernel at the batch buckets\n"
    "serving --batch (default 1,4,16) has its candidate schedules built in parallel\n"
    "through the kernel cache, each validated against the CPU reference on fresh\n"
    "random data (a wrong one is named and never chosen), then timed: many launches\n"
    "over weights rotating past the L2, in one CUDA graph, the median. Candidates are\n"
    "visited in a fixed order and one replaces the best so far only when at least 3%\n"
    "faster, so two tunings agree. --budget S stops each kernel's search when its\n"
    "share of S seconds (what is left over the kernels left) is spent, keeping the\n"
    "best so far. stderr shows the progress; stdout ends with a table: default and\n"
    "tuned time, speed-up, and the fraction of the read floor (the bytes a launch\n"
    "moves at the device's measured bandwidth). --plot draws it as an SVG. The\n"
    "choices go to the cache's database, which later compiles on this GPU use.\n"
    "--twice tunes again in the same call and checks that the choices agree.\n"
    "RABIT_TUNE_BREAK=N (a test hook) runs candidate N of every kernel broken.\n"
    "autotune/README.md documents the search space, the 3% rule and the file format.\n"
    "\n"
    "The cache directory is $RABIT_CACHE_DIR, else $XDG_CACHE_HOME/rabit, else ~/.cache/rabit.\n"
    "exit status: 0 ok, 1 bad input or usage (or no GPU to tune on), 2 internal error\n";

/* The cache's database path, or NULL after saying why. */
static char *db_path(void) {
  RbBuf err = {0};
  char *path = NULL;
  if (at_db_cache_path(&path, &err) != RB_OK) args_report("rabitc tune", err.data ? err.data : "out of memory");
  rb_buf_free(&err);
  return path;
}

static int export_db(const char *file) {
  char *path = db_path();
  if (!path) return 1;
  AtDb db = {0};
  RbBuf warn = {0}, err = {0};
  int rc = at_db_open(&db, path, &warn);
  if (warn.data) fprintf(stderr, "rabitc tune: %s", warn.data);
  if (rc == RB_OK && !strcmp(file, "-")) {
    RbBuf text = {0};
    at_db_format(&db, &text);
    int wrote = !text.oom && fwrite(text.data, 1, text.len, stdout) == text.len && fflush(stdout) == 0;
    rc = text.oom ? RB_EINTERNAL : wrote ? RB_OK : RB_EUSER;
    if (rc == RB_EUSER) fprintf(stderr, "rabitc tune: cannot write to stdout\n");
    rb_buf_free(&text);
  } else if (rc == RB_OK) {
    rc = at_db_save(&db, file, &err);
    if (rc == RB_OK) printf("exported %d record%s from %s to %s\n", db.n, db.n == 1 ? "" : "s", path, file);
  }
  args_report("rabitc tune", err.data);
  if (rc == RB_EINTERNAL && !err.len) fprintf(stderr, "rabitc tune: out of memory\n");
  rb_buf_free(&warn);
  rb_buf_free(&err);
  at_db_free(&db);
  rb_free(path);
  return rc;
}

typedef struct {
  const AtDb *from;
  AtMerged merged;
} Import;

static int merge_into(AtDb *db, void *ctx, RbBuf *err) {
  Import *im = ctx;
  int rc = at_db_merge(db, im->from, &im->merged);
  if (rc) rb_buf_puts(err, "out of memory merging the tuning databases");
  return rc;
}

static int import_db(const char *file) {
  /* The file is read and checked whole before the cache's copy is touched. */
  AtDb from = {0};
  RbBuf warn = {0}, err = {0};
  int rc = at_db_load(&from, file, &err);
  char *path = rc == RB_OK ? db_path() : NULL;
  if (rc == RB_OK && !path) rc = RB_EUSER;
  Import im = {&from, {0}};
  if (path) rc = at_db_edit(path, merge_into, &im, &warn, &err);
  if (warn.data) fprintf(stderr, "rabitc tune: %s", warn.data);
  if (rc == RB_OK)
    printf("imported %d record%s from %s into %s: %d added, %d replaced, %d kept\n", from.n, from.n == 1 ? "" : "s",
           file, path, im.merged.added, im.merged.replaced, im.merged.kept);
  args_report("rabitc tune", err.data);
  rb_buf_free(&warn);
  rb_buf_free(&err);
  at_db_free(&from);
  rb_free(path);
  return rc;
}

/* Contract (commands.h). */
int rabitc_tune(int argc, char **argv) {
  const char *export_file = NULL, *import_file = NULL, *batch = NULL, *plot = NULL;
  float budget = 0;
  int twice = 0;
  const ArgsOpt opts[] = {
      ARGS_OPT_STRING(NULL, "--export", &export_file, "FILE", "write the cache's tuning database to FILE"),
      ARGS_OPT_STRING(NULL, "--import", &import_file, "FILE", "merge the tuning database FILE into the cache's"),
      ARGS_OPT_FLOAT(NULL, "--budget", &budget, "S", 0, 1e6, ARGS_OPEN_LO,
                     "tuning a model: seconds to spend at most (needs a GPU)"),
      ARGS_OPT_STRING(NULL, "--batch", &batch, "LIST", "tuning a model: the batches to tune (default 1,4,16)"),
      ARGS_OPT_STRING(NULL, "--plot", &plot, "OUT.svg", "tuning a model: tuned and default times against the floor"),
      ARGS_OPT_FLAG(NULL, "--twice", &twice, "tuning a model: tune again in the same call and check that the\n"
                                             "choices agree (exit 1 when they do not); the first is kept"),
      ARGS_OPT_HELP("-h", "--help", "show this help"),
  };
  const char *pos[1];
  int npos = 0;
  const ArgsSpec spec = {"rabitc tune", help_head, help_tail, 17, opts, ARGS_COUNT(opts), 1, "one model"};
  int rc = args_parse(&spec, argc, argv, pos, &npos);
  if (rc != ARGS_GO) return rc;
  int batches[AT_MAX_BATCH] = {1, 4, 16}, nb = 3;
  if (batch && (nb = args_ints(batch, 1, 1 << 20, batches, AT_MAX_BATCH)) < 0) {
    fprintf(stderr, "rabitc tune: --batch needs at most %d batches 1..%d separated by commas, got '%s'\n",
            AT_MAX_BATCH, 1 << 20, batch);
    return 1;
  }
  int modes = (export_file != NULL) + (import_file != NULL) + (npos > 0);
  if (modes > 1) {
    fprintf(stderr, "rabitc tune: give one of --export FILE, --import FILE or MODEL.ir\n");
    return 1;
  }
  if (!modes) return args_missing(&spec, "--export FILE, --import FILE or MODEL.ir");
  if ((budget > 0 || batch || plot || twice) && !npos) {
    fprintf(stderr, "rabitc tune: --budget, --batch, --plot and --twice go with MODEL.ir\n");
    return 1;
  }
  if (export_file) {
    if (strcmp(export_file, "-") && paths_output_file("rabitc tune", "--export", export_file, "tuning.json")) return 1;
    return export_db(export_file);
  }
  if (import_file) return paths_input("rabitc tune", "database", import_file) ? 1 : import_db(import_file);
  if (paths_input("rabitc tune", "model", pos[0])) return 1;
  if (plot && paths_output_file("rabitc tune", "--plot", plot, "tune.svg")) return 1;
  return rabitc_tune_model(pos[0], batches, nb, budget, plot, twice);
}
