int load(const char *path);
