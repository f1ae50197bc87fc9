/* fuzz_replay_main.c: runs a fuzz target's LLVMFuzzerTestOneInput over every
 * file in the given directories, so CI replays each corpus (and the crash
 * regressions in it) without libFuzzer, under whatever sanitizers the build
 * has. Each input is an exact-size heap copy, so ASan sees reads past its end. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/base.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
  int files = 0;
  for (int i = 1; i < argc; i++) {
    DIR *dp = opendir(argv[i]);
    if (!dp) {
      printf("cannot open %s\n", argv[i]);
      return 1;
    }
    struct dirent *e;
    while ((e = readdir(dp))) {
      if (e->d_name[0] == '.') continue;
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
      RbBuf b = {0};
      if (rb_read_file(path, &b) == 0) {
        uint8_t *copy = malloc(b.len ? b.len : 1);
        if (copy) {
          memcpy(copy, b.data, b.len);
          LLVMFuzzerTestOneInput(copy, b.len);
          free(copy);
          files++;
        }
      }
      rb_buf_free(&b);
    }
    closedir(dp);
  }
  printf("replayed %d inputs without a crash\n", files);
  return files ? 0 : 1;
}
