/* jit.h: kernels from source to binary (prefix rt_): NVRTC, the on-disk cache
 * of cubins under an XXH3-128 key, and the parallel build of a kernel set.
 * Target-neutral above nvrtc.c; nothing here touches a GPU. */
#ifndef RABIT_RUNTIME_JIT_H
#define RABIT_RUNTIME_JIT_H

#include <stddef.h>
#include <stdint.h>

#include "codegen/codegen.h"
#include "ir/base.h"

/* ==== cache.c: cubins on disk under an XXH3-128 key ==== */

#define RT_CACHE_FORMAT 1

typedef struct {
  uint64_t hi, lo;
} RtKey;

/* Everything that changes a binary. */
typedef struct {
  const char *source;       /* canonical kernel source */
  const char *options;      /* NVRTC options, joined by spaces */
  const char *arch;         /* exact target: "sm_90", "sm_90a" */
  const char *compiler_id;  /* rt_nvrtc_id(): NVRTC version + builtins identity */
  const char *tool_version; /* RABIT_VERSION */
} RtKeyParts;

RtKey rt_key_make(const RtKeyParts *p); /* also mixes in RT_CACHE_FORMAT */
void rt_key_hex(RtKey k, char out[33]);

typedef struct RtCache RtCache;

typedef struct {
  uint64_t entries, bytes, max_bytes; /* entries: regular files with an entry's name */
  const char *dir; /* NULL when memory-only */
  int readonly;    /* dir is read, never written */
} RtCacheStats;

typedef struct {
  uint64_t entries, bytes; /* entry files removed, and their bytes */
  uint64_t failed;         /* files (or directories) with our names left in place */
} RtCacheCleared;

#define RT_CACHE_DEFAULT_MAX (1ull << 30)

/* Open the cache in dir, or when dir is NULL in $RABIT_CACHE_DIR, else
 * $XDG_CACHE_HOME/rabit, else ~/.cache/rabit (created with mode 0700).
 * An existing directory that others can enter is tightened to the owner's
 * bits when it is ours; else a warning says so (once per process).
 * A directory that can be read but not written (EACCES, EROFS) is used
 * read-only: its entries load, new kernels are kept in memory, and a warning
 * says so once per process. If the directory cannot be created or read, the
 * cache lives in memory for this process and a warning naming the directory
 * and the reason is appended to warn. Returns RB_OK, or RB_EINTERNAL on
 * allocation failure. */
int rt_cache_open(RtCache **out, const char *dir, uint64_t max_bytes, RbBuf *warn);
void rt_cache_close(RtCache *c);
/* The directory rt_cache_open(NULL) opens, without touching it: *out
 * (rb_malloc'ed) is $RABIT_CACHE_DIR, else $XDG_CACHE_HOME/rabit, else
 * ~/.cache/rabit, for files kept beside the kernels (the tuning database).
 * Returns RB_OK, RB_EUSER when none of them is set (*out NULL), or
 * RB_EINTERNAL out of memory. */
int rt_cache_dir(char **out);

/* Look a key up. Returns 1 on a hit with *data (rb_malloc'ed) and *len set,
 * 0 on a miss. An entry with a bad magic, version, key, length or checksum is
 * a miss: it is removed, never loaded. A hit refreshes the entry's LRU time. */
int rt_cache_get(RtCache *c, RtKey key, void **data, size_t *len);

/* Store an entry: temp file in the same directory, fsync, rename, fsync of the
 * directory; then evict least-recently-used entries beyond max_bytes.
 * Returns RB_OK or RB_EINTERNAL (with the reason appended to err if non-NULL);
 * a failed put leaves no partial entry. */
int rt_cache_put(RtCache *c, RtKey key, const void *data, size_t len, RbBuf *err);

/* Get-or-build under a per-key lock file, so that concurrent processes
 * compile one kernel once. build() fills *data and *len (rb_malloc'ed) and
 * returns RB_OK, or an error code that is passed back. *hit says whether the
 * entry came from the cache. A kernel that cannot be stored (a full disk) is
 * still returned; the first such failure in the process is appended to err,
 * later ones are not (one line for a full disk, not one per kernel). */
typedef int (*RtBuildFn)(void *ctx, void **data, size_t *len);
int rt_cache_fetch(RtCache *c, RtKey key, RtBuildFn build, void *ctx, void **data, size_t *len,
                   int *hit, RbBuf *err);

/* RB_OK; RB_EUSER (errno set) when the directory cannot be read. */
int rt_cache_stats(RtCache *c, RtCacheStats *st);
/* Removes every entry, lock and temp file, and the memory entries; *res says
 * how many entries went. Returns RB_OK when everything went, RB_EUSER when
 * something with our names could not be removed (read-only, a directory) or
 * the directory cannot be read, each named in err ("kernel cache: cannot
 * remove 'PATH': reason", the first 8 and a count of the rest), RB_EINTERNAL
 * out of memory. Other files in the directory are left alone. */
int rt_cache_clear(RtCache *c, RtCacheCleared *res, RbBuf *err);

/* ==== nvrtc.c: run-time compilation ==== */

/* Compile source for arch ("sm_90") into a cubin (nvrtcGetCUBIN, never PTX).
 * name is the program name NVRTC puts in its messages. opts are extra NVRTC
 * options. On failure returns RB_EUSER with the NVRTC log appended to log. */
int rt_nvrtc_compile(const char *source, const char *name, const char *arch,
                     const char *const *opts, int nopts, void **cubin, size_t *len, RbBuf *log);

/* "nvrtc 13.0 builtins <hex digest of libnvrtc-builtins>", computed once.
 * nvrtcVersion gives only major.minor, so the builtins library's contents
 * identify the exact compiler. */
const char *rt_nvrtc_id(void);

/* The NVRTC options every kernel is compiled with, in a fixed order. */
extern const char *const rt_nvrtc_default_opts[];
extern const int rt_nvrtc_default_nopts;

/* A compiler a target's source is built with (CgTarget.compiler names it):
 * its identity and fixed options go into every cache key. */
typedef struct RtCompiler {
  const char *name;                  /* "nvrtc" */
  const char *(*id)(void);           /* exact version and builtins identity */
  const char *const *options;        /* the fixed options it always adds, in key order */
  int noptions;
  /* source -> binary for arch, with extra options opts; RB_EUSER with the log on failure */
  int (*compile)(const char *source, const char *name, const char *arch, const char *const *opts, int nopts,
                 void **bin, size_t *len, RbBuf *log);
} RtCompiler;

extern const RtCompiler rt_compiler_nvrtc;

/* ==== llvm.c: the host target's compiler and JIT (builds with LLVM 16 only) ==== */

/* "llvm 16.0.6 triple T cpu C features F", computed once: the compiler
 * identity in every host kernel's key. */
const char *rt_llvm_id(void);
extern const RtCompiler rt_compiler_llvm; /* "llvm": .ll text -> O3 for this CPU -> ELF object */

/* In-process loading of host objects: one ORC LLJIT. */
typedef struct RtHostJit RtHostJit;
int rt_host_jit_open(RtHostJit **out, RbBuf *err); /* RB_OK, RB_EUSER (no native target), RB_EINTERNAL */
void rt_host_jit_close(RtHostJit *j);              /* the entries it gave are gone with it */
struct RtBuilt;
/* Load built kernel b's object and resolve its entry into *fn; an entry this
 * JIT already holds (the same kernel again: another layer of one shape) is
 * returned without loading anything. A cached
 * object that LLVM refuses is reported once per JIT in warn, rebuilt from
 * b->source, stored over the bad entry (when cache is not NULL) and loaded;
 * never run. Returns RB_OK, or RB_EUSER/RB_EINTERNAL with the reason in warn. */
int rt_host_jit_load(RtHostJit *j, struct RtBuilt *b, RtCache *cache, CgHostEntry *fn, RbBuf *warn);
/* Run fn over the work items of geometry g at extent n, spread over pool
 * (NULL: this thread alone); args the pointer array of the family's cg_*_argv
 * (CgArgv.v). Returns the work items run: 0 for an extent that gives none. */
int64_t rt_host_launch(RbPool *pool, CgHostEntry fn, const CgGeometry *g, int n, void *const *args);

/* ==== build.c: a model's kernels compiled in parallel through the cache ==== */

/* The compiler named name ("nvrtc"), or NULL when this build has none. */
const RtCompiler *rt_compiler_find(const char *name);

typedef struct {
  const CgTarget *target; /* what emits the source; its compiler builds it */
  const char *arch;       /* exact target, "sm_90" */
  RtCache *cache;
  int jobs;               /* worker threads; 0 = the online CPUs */
} RtBuildOptions;

typedef struct RtBuilt {
  char entry[CG_ENTRY_MAX];
  RtKey key;
  int hit;     /* the binary came from the cache */
  double ms;   /* wall time to obtain it: compile, or load from the cache */
  void *cubin; /* rb_malloc'ed */
  size_t len;
  int rc;      /* RB_OK, RB_EUSER (the target or its compiler rejected it), RB_EINTERNAL */
  RbBuf source;/* the canonical source */
  RbBuf log;   /* the compiler's log on failure, and cache warnings */
} RtBuilt;

/* Emit, key, and fetch-or-compile each of the n kernels, spreading them over
 * worker threads. out[i] describes kernels[i]. Returns RB_OK when all of them
 * built, else the worst rc; every out[i] is filled either way. */
int rt_build_kernels(const CgKernel *kernels, int n, const RtBuildOptions *o, RtBuilt *out);
void rt_built_free(RtBuilt *b, int n);
/* The same for every kernel of a set: *built (rb_malloc'ed, ks->n entries,
 * free with rt_built_free and rb_free) describes ks->k[i]. */
int rt_build_kernel_set(const CgKernelSet *ks, const RtBuildOptions *o, RtBuilt **built);

/* Creates name (no '/') for writing, mode 0600, in this process's private
 * directory for the sources of kernels that failed to build: made on first
 * use by mkdtemp as $TMPDIR/rabit-kernels-XXXXXX (else under /tmp), mode
 * 0700. The file is opened O_CREAT|O_EXCL|O_NOFOLLOW, so a planted link or
 * file is never followed or overwritten. Returns the fd with its full name in
 * path, or -1 with errno set and the reason appended to err. */
int rt_dump_create(const char *name, char *path, size_t n, RbBuf *err);


#endif
