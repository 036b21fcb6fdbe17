/* The host side of one sandbox: create it, watch it, end it, and collect its verdict. */
#ifndef KBOX_SANDBOX_H
#define KBOX_SANDBOX_H

#include <stdbool.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>

#include "sandbox/achieved.h"
#include "spec/spec.h"

struct kbox_cgroup;

struct kbox_sandbox {
  struct kbox_spec *spec;
  pid_t pid;            /* sandbox pid 1, as seen on the host */
  int pidfd;
  int chan;             /* channel to pid 1 */
  int id_lock;          /* abstract socket that reserves the id while we run */
  pid_t workload_pid;   /* inside the sandbox's pid namespace */
  struct timespec started;
  struct timespec ended;
  bool have_status;     /* the workload's wait status arrived */
  int status;
  bool reaped;          /* pid 1 was reaped */
  struct rusage rusage; /* of pid 1 and everything it reaped */
  bool timed_out;
  int kill_signal;      /* signal kbox used to end the sandbox, 0 if none */
  struct kbox_cgroup *cgroup; /* limits and their verdict (src/cgroup), NULL if none */
  struct kbox_achieved achieved; /* set-up steps that fell back, as pid 1 reported them */
  bool foreign;         /* pid 1 is not our child (a warm kernel, src/warm): its end is seen on
                           pidfd, its status comes on chan, there is no rusage */
  bool leave_on_status; /* set by the caller: supervision ends with the workload's status, not
                           with pid 1's reaping (kbox_sandbox_release) */
  bool released;        /* kbox_sandbox_release ran: pid 1 is exiting on its own */
};

/* Signals the host kbox passes on to pid 1 (which forwards every asynchronous one, util/pid1.h). */
extern const int kbox_forwarded_signals[];
/* Block the signals pid 1 forwards to the workload and return a non-blocking signalfd for them
   (kbox reads it in its event loop and passes each signal on with kbox_sandbox_signal). */
int kbox_sandbox_signalfd(kbox_error_t *err);
/* Build the sandbox and start the workload; returns once it has executed (or failed to). */
int kbox_sandbox_start(struct kbox_sandbox *sb, struct kbox_spec *spec, kbox_error_t *err);
/* For a sandbox built another way (src/warm): reset sb and reserve spec's id, as start does first. */
int kbox_sandbox_reserve(struct kbox_sandbox *sb, struct kbox_spec *spec, kbox_error_t *err);
/* Read one message from pid 1 (call when chan is readable). */
int kbox_sandbox_on_message(struct kbox_sandbox *sb, kbox_error_t *err);
/* Reap pid 1 (call when pidfd is readable); returns true once reaped. */
bool kbox_sandbox_reap(struct kbox_sandbox *sb);
/* Send a signal to pid 1 (which forwards catchable ones to the workload). */
void kbox_sandbox_signal(struct kbox_sandbox *sb, int sig);
/* Kill everything and wait for it. */
void kbox_sandbox_kill(struct kbox_sandbox *sb);
/* Once the workload's status arrived (pid 1 exits right after sending it): read the cgroup
   counters now and let pid 1 go without waiting for its namespaces' teardown; destroy then hands
   the cgroup directories to the reaper, which removes them once the last task has left. No
   rusage (the report needs it: callers with --report wait for the reaping). */
void kbox_sandbox_release(struct kbox_sandbox *sb);
void kbox_sandbox_destroy(struct kbox_sandbox *sb);
/* Exit code kbox should return for this sandbox (workload code, 128+N, 124 on timeout...). */
int kbox_sandbox_exit_code(const struct kbox_sandbox *sb);
/* Milliseconds since start. */
long long kbox_sandbox_elapsed_ms(const struct kbox_sandbox *sb);

#endif
