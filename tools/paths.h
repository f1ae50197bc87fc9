/* paths.h: the checks a command makes on the files its arguments name, before
 * any work: an input that is missing, an output whose directory is missing or
 * unwritable, an output that would overwrite an input. Each check prints its
 * one error line ("rabitc: ...") and returns 1 (the exit status), else 0. */
#ifndef RABIT_TOOLS_PATHS_H
#define RABIT_TOOLS_PATHS_H

/* path can be read as a file (not a directory). what names it in the error:
 * "weights" gives "TOOL: cannot read weights 'w.st': No such file or directory";
 * NULL gives "TOOL: cannot read 'w.st': ...". "-" (stdin) always passes. */
int paths_input(const char *tool, const char *what, const char *path);

/* path can be written as a file by a write beside it and a rename: it is not
 * a directory nor a special file, and its directory exists and is writable.
 * example (may be NULL) is the file name suggested when path is a directory. */
int paths_output_file(const char *tool, const char *opt, const char *path, const char *example);

/* The same for a file written in place (fopen): an existing device or pipe
 * (/dev/null) passes too. */
int paths_output_stream(const char *tool, const char *opt, const char *path);

/* path is a directory we can write in: created (with its parents) if missing. */
int paths_output_dir(const char *tool, const char *opt, const char *path);

/* 1 when a and b both exist and are the same file (device and inode: a link,
 * "./x" and "x" are caught as well as the same name). */
int paths_same_file(const char *a, const char *b);

/* 1 when the file at path begins with the GGUF magic ("GGUF"). */
int paths_is_gguf(const char *path);

#endif
