/*
 * Path helpers (common/file.c).  Not installed.
 */
#ifndef CUBEID_PATH_H
#define CUBEID_PATH_H

/* dir + "/" + name; caller frees. */
int path_join(const char *dir, const char *name, char **out);

#endif
