/* kbox interrupt / kbox kill: act on a kernel started with an id. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "kernel/client.h"
#include "kernel/state.h"
#include "util/cleanup.h"
#include "util/proc.h"
#include "util/log.h"

#define SHUTDOWN_WAIT_MS 10000 /* the supervisor's own grace (shutdown_request -> kill) is 5 s */

/* The state of the one ID argument, or an error (usage, bad id, unknown id). */
static int one_id(int argc, char **argv, const char *usage, struct kbox_state *st, kbox_error_t *err) {
  if (argc != 2 || argv[1][0] == '-')
    return kbox_error_make(err, 0, "usage: %s", usage);
  return kbox_state_read(argv[1], st, err);
}

/* Wait until pid exits (pidfd), up to ms; true when it did. */
static bool wait_exit(pid_t pid, int ms) {
  cleanup_close int fd = kbox_pidfd_open(pid, 0);
  if (fd < 0) return errno == ESRCH;
  struct pollfd p = {.fd = fd, .events = POLLIN};
  return poll(&p, 1, ms) > 0;
}

int kbox_cmd_interrupt(int argc, char **argv) {
  cleanup_error kbox_error_t err = NULL;
  struct kbox_state st;
  if (argc == 2 && strcmp(argv[1], "--help") == 0) {
    printf("Usage: kbox interrupt ID\nInterrupt the cell running in kernel ID (interrupt_request on its control channel;\n"
           "SIGINT through its supervisor if the kernel does not answer). The kernel stays.\n");
    return 0;
  }
  if (one_id(argc, argv, "kbox interrupt ID", &st, &err) < 0) return kbox_error_report(&err);
  if (!st.alive) {
    kbox_error_make(&err, 0, "kernel '%s' is dead (kbox kill %s removes its state)", st.id, st.id);
    return kbox_error_report(&err);
  }
  struct kbox_conn conn;
  struct kbox_client c = {0};
  int rc = kbox_state_conn(&st, &conn, &err);
  if (rc == 0) rc = kbox_client_open(&c, &conn, &err);
  if (rc == 0) rc = kbox_client_interrupt(&c, 5000, &err);
  kbox_client_close(&c);
  if (rc < 0) {
    kbox_warn("%s; sending SIGINT through the supervisor instead", err->msg);
    if (st.pid <= 0 || kill(st.pid, SIGINT) < 0) {
      kbox_error_free(&err);
      kbox_error_make(&err, errno, "interrupting kernel '%s'", st.id);
      return kbox_error_report(&err);
    }
  }
  return 0;
}

int kbox_cmd_kill(int argc, char **argv) {
  cleanup_error kbox_error_t err = NULL;
  struct kbox_state st;
  if (argc == 2 && strcmp(argv[1], "--help") == 0) {
    printf("Usage: kbox kill ID\nShut kernel ID down: SIGTERM to its supervisor (shutdown_request to the kernel, killed\n"
           "after 5 s), SIGKILL if the supervisor is still there after %d s; then remove its state. A dead\n"
           "kernel's stale state is just removed.\n", SHUTDOWN_WAIT_MS / 1000);
    return 0;
  }
  if (one_id(argc, argv, "kbox kill ID", &st, &err) < 0) return kbox_error_report(&err);
  if (st.alive && st.pid > 0) {
    kill(st.pid, SIGTERM);
    kill(st.pid, SIGCONT); /* a stopped supervisor would only see the SIGTERM once resumed */
    if (!wait_exit(st.pid, SHUTDOWN_WAIT_MS)) {
      kbox_warn("kernel '%s' did not shut down within %d s: killing it", st.id, SHUTDOWN_WAIT_MS / 1000);
      kill(st.pid, SIGKILL); /* the sandbox's pid 1 dies with it (PDEATHSIG) */
      wait_exit(st.pid, 5000);
    }
  } else if (st.alive) {
    kbox_error_make(&err, 0, "kernel '%s' is still starting (no pid recorded yet); try again in a moment", st.id);
    return kbox_error_report(&err);
  }
  kbox_state_remove(&st);
  return 0;
}
