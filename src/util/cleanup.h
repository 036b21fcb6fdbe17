/* __attribute__((cleanup)) helpers for fds, memory and FILE streams. */
#ifndef KBOX_CLEANUP_H
#define KBOX_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <errno.h>

static inline void cleanup_freep(void *p) {
  void **pp = (void **)p;
  free(*pp);
  *pp = NULL;
}

static inline void cleanup_closep(int *fd) {
  if (*fd >= 0) {
    int saved = errno;
    close(*fd);
    errno = saved;
  }
  *fd = -1;
}

static inline void cleanup_fclosep(FILE **f) {
  if (*f != NULL) fclose(*f);
  *f = NULL;
}

/* Free a NULL-terminated array of strings. */
static inline void cleanup_strvp(char ***v) {
  if (*v == NULL) return;
  for (char **p = *v; *p != NULL; p++) free(*p);
  free(*v);
  *v = NULL;
}

#define cleanup_free __attribute__((cleanup(cleanup_freep)))
#define cleanup_close __attribute__((cleanup(cleanup_closep)))
#define cleanup_file __attribute__((cleanup(cleanup_fclosep)))
#define cleanup_strv __attribute__((cleanup(cleanup_strvp)))

/* Hand ownership of a cleanup-managed value to the caller. */
#define steal_fd(fd) ({ int _f = (fd); (fd) = -1; _f; })
#define steal_ptr(p) ({ __typeof__(p) _p = (p); (p) = NULL; _p; })

#endif
