/* Network inside the sandbox: only the loopback interface, brought up with SIOCSIFFLAGS. */
#ifndef KBOX_NET_H
#define KBOX_NET_H

#include "util/error.h"

/* Bring `lo` up in the current network namespace. */
int kbox_net_loopback_up(kbox_error_t *err);

#endif
