/* Starting another kbox command in the background: a re-execution of this binary (/proc/self/exe)
   with stdin and stdout on /dev/null and every signal unblocked. Used by the warm service (the
   server a kernel starts on demand) and the pool filler (its holders). */
#ifndef KBOX_SELFEXEC_H
#define KBOX_SELFEXEC_H

#include <stdbool.h>
#include <sys/types.h>

#include "util/error.h"

struct kbox_selfexec {
  bool detach;            /* own session and not our child (double fork): it outlives us, nobody reaps it
                             but init; else our child, for the caller to reap */
  bool keep_stderr;       /* stderr stays ours (else /dev/null too) */
  int death_signal;       /* not detached: the signal it gets when we die (0: none) */
  const char *env_name;   /* one variable set in the copy only (NULL: none) */
  const char *env_value;
};

/* Start `kbox argv[1] ...` as o says. Returns the child's pid (detached: 0 once the intermediate
   process was reaped), or -1 with err when fork fails (a failed exec ends the copy with 127). */
pid_t kbox_selfexec(char *const argv[], const struct kbox_selfexec *o, kbox_error_t *err);

#endif
