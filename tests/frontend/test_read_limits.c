/* test_read_limits: the capped reader (rb_read_file_max) at its edges, and
 * the frontend's own cap on text handed to it directly (fe_compile), which
 * rt_compile's text option and the fuzz target use without a file. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "tests/common/check.h"

/* Read path with cap max: the return value, errno (0 on success) and the length. */
static int read_capped(const char *path, size_t max, size_t *len) {
  RbBuf b = {0};
  errno = 0;
  int rc = rb_read_file_max(path, max, &b);
  int e = rc ? errno : 0;
  *len = b.len;
  rb_buf_free(&b);
  return rc ? e : 0;
}

int main(void) {
  char dir[] = "/tmp/rabit_read_XXXXXX";
  if (!mkdtemp(dir)) return 1;
  char path[256];
  snprintf(path, sizeof path, "%s/f", dir);
  FILE *f = fopen(path, "wb");
  for (int i = 0; i < 100000; i++) fputc('a', f);
  fclose(f);
  size_t len = 0;
  /* Exactly at the cap is fine; a cap one byte short of the size refuses it. */
  CHECK(read_capped(path, 100000, &len) == 0 && len == 100000, "at the cap: len %zu", len);
  CHECK(read_capped(path, 99999, &len) == EFBIG, "a byte over the cap is EFBIG");
  CHECK(read_capped(path, 0, &len) == EFBIG, "cap 0");
  /* An endless stream has no size to look at: it ends one byte past the cap. */
  CHECK(read_capped("/dev/zero", 100000, &len) == EFBIG, "/dev/zero ends at the cap");
  CHECK(read_capped("/dev/zero", 0, &len) == EFBIG, "/dev/zero with cap 0");
  CHECK(read_capped(dir, 1000, &len) == EISDIR, "a directory is EISDIR");
  CHECK(read_capped(dir, SIZE_MAX - 1, &len) == EISDIR, "a directory without a cap");
  snprintf(path, sizeof path, "%s/missing", dir);
  CHECK(read_capped(path, 1000, &len) == ENOENT, "a missing file");
  snprintf(path, sizeof path, "%s/empty", dir);
  fclose(fopen(path, "wb"));
  RbBuf b = {0};
  CHECK(rb_read_file_max(path, 0, &b) == 0 && b.data && b.len == 0, "an empty file under cap 0 is \"\"");
  rb_buf_free(&b);
  unlink(path);
  snprintf(path, sizeof path, "%s/f", dir);
  unlink(path);
  rmdir(dir);

  char s[32];
  CHECK(strcmp(rb_size_str(FE_MAX_SOURCE_BYTES, s), "16 MiB") == 0, "%s", s);
  CHECK(strcmp(rb_size_str((size_t)1 << 30, s), "1 GiB") == 0, "%s", s);
  CHECK(strcmp(rb_size_str(2048, s), "2 KiB") == 0, "%s", s);
  CHECK(strcmp(rb_size_str(1536, s), "1536 bytes") == 0, "%s", s);

  /* Text over the cap is refused before it is tokenized, naming the cap. */
  char *big = malloc(FE_MAX_SOURCE_BYTES + 2);
  memset(big, '#', FE_MAX_SOURCE_BYTES + 1);
  big[FE_MAX_SOURCE_BYTES + 1] = 0;
  IrDiag d;
  ir_diag_init(&d, "big.ir", big);
  IrGraph *g = NULL;
  CHECK(fe_compile("big.ir", big, NULL, &d, &g) == RB_EUSER && !g, "over the cap");
  CHECK(d.out.data && strcmp(d.out.data, "big.ir: error: the file is over 16 MiB, the cap on an IR file\n") == 0,
        "got: %s", d.out.data ? d.out.data : "(none)");
  ir_diag_free(&d);
  /* At the cap it is read (and fails as text without a header, not as size). */
  big[FE_MAX_SOURCE_BYTES] = 0;
  ir_diag_init(&d, "big.ir", big);
  CHECK(fe_compile("big.ir", big, NULL, &d, &g) == RB_EUSER && d.out.data && strstr(d.out.data, "header"),
        "at the cap: %.80s", d.out.data ? d.out.data : "(none)");
  ir_diag_free(&d);
  free(big);
  return CHECK_SUMMARY();
}
