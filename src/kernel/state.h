/* Per-user runtime state of kernels started with an id: one directory per id (the kernel's run
   directory, see launch.c) holding connection.json (0600), pid, options.json, exec.lock. What `kbox
   ps`, `inspect`, `exec --id`, `interrupt`, `kill` and `run --detach` read. */
#ifndef KBOX_KERNEL_STATE_H
#define KBOX_KERNEL_STATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "kernel/connection.h"
#include "spec/spec.h"
#include "util/error.h"

/* What one state directory says, checked against the live system. */
struct kbox_state {
  char id[72];
  char dir[4096];
  pid_t pid;            /* supervising kbox process, 0 when unknown */
  pid_t sandbox_pid;    /* sandbox pid 1 on the host, 0 when unknown */
  bool alive;           /* the supervisor still runs (pid + start time match, or the run lock is held) */
  bool have_conn;       /* connection.json exists */
  bool busy;            /* a `kbox exec --id` holds exec.lock */
  bool stopped;         /* the supervisor is stopped (SIGSTOP, traced): nothing it brokers moves */
  long long created;    /* unix seconds, 0 when unknown */
};

/* The base directory of run dirs and kernel state ($XDG_RUNTIME_DIR/kbox, else /run/kbox as root,
   else /tmp/kbox-UID), checked to be ours with mode 0700; create it when asked. */
int kbox_state_base(char *out, size_t n, bool create, kbox_error_t *err);
/* Remove the run directories of dead kbox processes (lock free), as every kernel start does, and
   verdicts older than a minute that no exec --id came for. */
void kbox_state_sweep(void);
/* Read the state of ID. Fails with a clear message for a bad id or when no such kernel exists. */
int kbox_state_read(const char *id, struct kbox_state *st, kbox_error_t *err);
/* All state directories (sorted by id); *n set. Caller frees the array. */
int kbox_state_list(struct kbox_state **out, size_t *n, kbox_error_t *err);
/* "idle", "busy", "starting", "stopped" or "dead". */
/* Ids of the warm pool's kernels before a claim (src/warm/pool_fill.c): `kbox ps` shows them "pooled". */
#define KBOX_POOL_ID_PREFIX "kpool-"

const char *kbox_state_status(const struct kbox_state *st);
/* JSON for ps/inspect: id, status, pids, age, memory use, limits, paths. */
json_t *kbox_state_json(const struct kbox_state *st);
/* Read the connection file of a state. */
int kbox_state_conn(const struct kbox_state *st, struct kbox_conn *c, kbox_error_t *err);
/* Remove a state directory (and its detach log). */
void kbox_state_remove(const struct kbox_state *st);
/* Take exec.lock, waiting up to wait_ms; returns the fd (close to release) or -1 with err. */
int kbox_state_lock_exec(const struct kbox_state *st, int wait_ms, kbox_error_t *err);

/* Written by the supervising kbox (kernel mode, in the run directory): connection.json, pid and
   options.json. Called once the broker is open and the sandbox started. */
int kbox_state_record(const char *rundir, const struct kbox_spec *spec, const struct kbox_conn *host,
                      pid_t sandbox_pid, kbox_error_t *err);
/* The connection JSON line exactly as `kbox run` prints it. */
char *kbox_state_conn_line(const struct kbox_conn *host, const char *id);

/* The verdict of a kernel with a user-given id that ended on its own (crash, out of memory), kept
   at BASE/.ID.verdict.json (0600) for the `kbox exec --id` that saw it go. The supervisor writes
   it (with "supervisor_pid") before it exits. */
void kbox_state_write_verdict(const char *id, json_t *verdict);
/* Read and remove ID's verdict if supervisor wrote it; NULL otherwise. */
json_t *kbox_state_take_verdict(const char *id, pid_t supervisor);
/* Remove ID's verdict (a new kernel with this id starts, or kbox kill). */
void kbox_state_drop_verdict(const char *id);

/* Path of the detach log of ID: BASE/.ID.log (outside the run dir, which is removed at exit). */
int kbox_state_log_path(const char *id, char *out, size_t n, kbox_error_t *err);

#endif
