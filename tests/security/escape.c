/* The escape battery: a static program run as the workload inside `kbox run`. It tries each thing a
   sandboxed process must not be able to do and prints one line per attempt:
     attempt=<name> result=denied errno=EPERM       refused (errno, signal or an empty/hidden view)
     attempt=<name> result=ALLOWED detail=...       the forbidden thing worked
     attempt=<name> result=error errno=EBADF        failed for another reason: not proven refused
   then the process's own privilege state (CapEff=..., NoNewPrivs=..., Seccomp=...). Every attempt
   runs in a forked child, so a seccomp kill or a changed state stays in that child. Nothing harmful
   is done when an attempt succeeds (e.g. /proc/sysrq-trigger is opened, never written). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/bpf.h>
#include <linux/if_alg.h>
#include <linux/io_uring.h>
#include <linux/kcmp.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <linux/sched.h>
#include <linux/userfaultfd.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/quota.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef PF_KEY_V2
#define PF_KEY_V2 2
#endif

enum outcome { DENIED, ALLOWED, ERROR };

/* What a child sends back to the parent. */
struct verdict {
  int outcome;
  int err;
  char detail[200];
};

static int result_fd = -1;
static bool done;

static void send_verdict(int outcome, int err, const char *fmt, ...) {
  if (done) return;
  struct verdict v = {.outcome = outcome, .err = err};
  if (fmt != NULL) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v.detail, sizeof(v.detail), fmt, ap);
    va_end(ap);
  }
  if (write(result_fd, &v, sizeof(v)) != (ssize_t)sizeof(v)) _exit(3);
  done = true;
}

/* Refusals: the sandbox said no (seccomp, missing capability, read-only mount, no such syscall). */
static bool refusal(int e) { return e == EPERM || e == EACCES || e == EROFS || e == ENOSYS; }

/* Judge a syscall's return value: -1 + refusal errno = denied; success = ALLOWED. */
static void judge(long r, const char *what) {
  int e = errno;
  if (r >= 0) send_verdict(ALLOWED, 0, "%s succeeded (returned %ld)", what, r);
  else send_verdict(refusal(e) ? DENIED : ERROR, e, NULL);
}

#define TRY(call) judge((long)(call), #call)

/* ---------------------------------------------------------------- mounts and roots */
static void a_mount(void) { TRY(mount("kbox-escape", "/tmp", "tmpfs", 0, NULL)); }
static void a_umount2(void) { TRY(umount2("/proc/sys", MNT_DETACH)); }
static void a_move_mount(void) { TRY(syscall(SYS_move_mount, AT_FDCWD, "/tmp", AT_FDCWD, "/mnt", 0)); }
static void a_fsopen(void) { TRY(syscall(SYS_fsopen, "tmpfs", 0)); }
static void a_fsmount(void) { TRY(syscall(SYS_fsmount, -1, 0, 0)); }
static void a_fspick(void) { TRY(syscall(SYS_fspick, AT_FDCWD, "/", 0)); }
static void a_fsconfig(void) { TRY(syscall(SYS_fsconfig, -1, 0, NULL, NULL, 0)); }
static void a_open_tree(void) { TRY(syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */)); }
static void a_mount_setattr(void) {
  struct { uint64_t set, clr, prop, userns; } attr = {0, 0x2 /* MOUNT_ATTR_NOSUID */, 0, 0};
  TRY(syscall(SYS_mount_setattr, AT_FDCWD, "/", 0, &attr, sizeof(attr)));
}
static void a_pivot_root(void) {
  if (chdir("/") < 0) { send_verdict(ERROR, errno, "chdir /"); return; }
  TRY(syscall(SYS_pivot_root, ".", "."));
}
static void a_chroot(void) { TRY(chroot("/tmp")); }

/* ---------------------------------------------------------------- namespaces */
static void a_unshare_user(void) { TRY(unshare(CLONE_NEWUSER)); }
static void a_unshare_mount_net(void) { TRY(unshare(CLONE_NEWNS | CLONE_NEWNET)); }
static void a_setns(void) {
  int fd = open("/proc/self/ns/net", O_RDONLY);
  if (fd < 0) { judge(-1, "open"); return; }
  TRY(setns(fd, CLONE_NEWNET));
}
/* A raw clone with namespace flags; the new child (if any) exits at once. */
static void raw_clone(unsigned long flags) {
  long r = syscall(SYS_clone, flags | SIGCHLD, 0, NULL, NULL, 0);
  if (r == 0) _exit(0);
  if (r > 0) waitpid((pid_t)r, NULL, 0);
  judge(r, "clone");
}
static void a_clone_newuser(void) { raw_clone(CLONE_NEWUSER); }
static void a_clone_newpid(void) { raw_clone(CLONE_NEWPID); }
static void a_clone_newns(void) { raw_clone(CLONE_NEWNS); }
static void a_clone3_newuser(void) {
  struct clone_args args = {.flags = CLONE_NEWUSER, .exit_signal = SIGCHLD};
  long r = syscall(SYS_clone3, &args, sizeof(args));
  if (r == 0) _exit(0);
  if (r > 0) waitpid((pid_t)r, NULL, 0);
  judge(r, "clone3");
}

/* ---------------------------------------------------------------- kernel facilities */
static void a_keyctl(void) { TRY(syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 1)); }
static void a_add_key(void) { TRY(syscall(SYS_add_key, "user", "kbox-escape", "x", 1, -2 /* process keyring */)); }
static void a_request_key(void) { TRY(syscall(SYS_request_key, "user", "kbox-escape", NULL, -2)); }
static void a_bpf(void) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.map_type = BPF_MAP_TYPE_ARRAY;
  attr.key_size = 4;
  attr.value_size = 4;
  attr.max_entries = 1;
  TRY(syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)));
}
static void a_perf_event_open(void) {
  struct perf_event_attr pe;
  memset(&pe, 0, sizeof(pe));
  pe.type = PERF_TYPE_SOFTWARE;
  pe.size = sizeof(pe);
  pe.config = PERF_COUNT_SW_TASK_CLOCK;
  pe.exclude_kernel = 1;
  pe.exclude_hv = 1;
  TRY(syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
}
static void a_userfaultfd(void) { TRY(syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY)); }
static void a_io_uring_setup(void) {
  struct io_uring_params p;
  memset(&p, 0, sizeof(p));
  TRY(syscall(SYS_io_uring_setup, 4, &p));
}
static void a_io_uring_enter(void) { TRY(syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0)); }
static void a_io_uring_register(void) { TRY(syscall(SYS_io_uring_register, -1, 0, NULL, 0)); }
static void a_kexec_load(void) { TRY(syscall(SYS_kexec_load, 0, 0, NULL, 0)); }
static void a_kexec_file_load(void) { TRY(syscall(SYS_kexec_file_load, -1, -1, 0, "", 0)); }
static void a_init_module(void) { TRY(syscall(SYS_init_module, NULL, 0, "")); }
static void a_finit_module(void) { TRY(syscall(SYS_finit_module, -1, "", 0)); }
static void a_delete_module(void) { TRY(syscall(SYS_delete_module, "kbox_escape", O_NONBLOCK)); }
static void a_reboot(void) {
  TRY(syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_CAD_OFF, NULL));
}
static void a_swapon(void) { TRY(swapon("/tmp/kbox-swap", 0)); }
static void a_swapoff(void) { TRY(swapoff("/tmp/kbox-swap")); }
static void a_acct(void) { TRY(acct("/tmp/kbox-acct")); }
static void a_quotactl(void) {
  char buf[256];
  TRY(quotactl(QCMD(Q_GETFMT, USRQUOTA), "/dev/null", 0, buf));
}
static void a_settimeofday(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  TRY(settimeofday(&tv, NULL));
}
static void a_clock_settime(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  TRY(clock_settime(CLOCK_REALTIME, &ts));
}
static void a_adjtimex(void) {
  struct timex tx = {.modes = 0}; /* read-only query: must be refused all the same */
  TRY(syscall(SYS_adjtimex, &tx));
}
static void a_clock_adjtime(void) {
  struct timex tx = {.modes = 0};
  TRY(syscall(SYS_clock_adjtime, CLOCK_REALTIME, &tx));
}
static void a_syslog(void) { TRY(syscall(SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0)); }
static void a_iopl(void) { TRY(syscall(SYS_iopl, 3)); }
static void a_kcmp(void) { TRY(syscall(SYS_kcmp, getpid(), 1, KCMP_VM, 0, 0)); }

/* ---------------------------------------------------------------- sockets */
static void a_socket_packet(void) { TRY(socket(AF_PACKET, SOCK_RAW, 0)); }
static void a_socket_packet_highbits(void) {
  TRY(syscall(SYS_socket, (1UL << 32) | AF_PACKET, SOCK_RAW, 0)); /* the kernel reads only 32 bits */
}
static void a_socket_vsock(void) { TRY(socket(AF_VSOCK, SOCK_STREAM, 0)); }
static void a_socket_alg(void) { TRY(socket(AF_ALG, SOCK_SEQPACKET, 0)); }
static void a_socket_key(void) { TRY(socket(PF_KEY, SOCK_RAW, PF_KEY_V2)); }
static void a_socket_netlink_audit(void) { TRY(socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT)); }
static void a_socket_netlink_uevent(void) { TRY(socket(AF_NETLINK, SOCK_RAW, NETLINK_KOBJECT_UEVENT)); }
static void a_socket_netlink_sockdiag(void) { TRY(socket(AF_NETLINK, SOCK_RAW, NETLINK_SOCK_DIAG)); }
static void a_socket_raw_inet(void) { TRY(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)); }
static void a_socket_raw_inet6(void) { TRY(socket(AF_INET6, SOCK_RAW, IPPROTO_RAW)); }

/* ---------------------------------------------------------------- terminals */
/* A pty that is our controlling terminal: the setting where TIOCSTI works without privileges. */
static int own_pty(void) {
  int m = posix_openpt(O_RDWR | O_NOCTTY);
  if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0) return -1;
  setsid();
  int s = open(ptsname(m), O_RDWR);
  if (s < 0) return -1;
  ioctl(s, TIOCSCTTY, 0);
  return s;
}
static void a_ioctl_tiocsti(void) {
  int s = own_pty();
  if (s < 0) { send_verdict(ERROR, errno, "no pty to test with"); return; }
  char c = 'x';
  TRY(ioctl(s, TIOCSTI, &c));
}
static void a_ioctl_tiocsti_highbits(void) {
  int s = own_pty();
  if (s < 0) { send_verdict(ERROR, errno, "no pty to test with"); return; }
  char c = 'x';
  TRY(syscall(SYS_ioctl, s, (1UL << 32) | TIOCSTI, &c));
}
static void a_ioctl_tioclinux(void) {
  int s = own_pty();
  if (s < 0) { send_verdict(ERROR, errno, "no pty to test with"); return; }
  char sub = 2; /* TIOCL_SETSEL */
  TRY(ioctl(s, TIOCLINUX, &sub));
}

/* ---------------------------------------------------------------- /proc and /sys */
/* Opening for writing is the attack; never write (sysrq would act on the host). */
static void open_for_write(const char *path) {
  int fd = open(path, O_WRONLY);
  if (fd >= 0) send_verdict(ALLOWED, 0, "%s opened for writing", path);
  else if (errno == ENOENT) send_verdict(DENIED, ENOENT, "absent (not in this kernel, or hidden)");
  else judge(-1, path);
}
static void a_core_pattern(void) { open_for_write("/proc/sys/kernel/core_pattern"); }
static void a_sysrq_trigger(void) { open_for_write("/proc/sysrq-trigger"); }
static void a_uevent_helper(void) { open_for_write("/sys/kernel/uevent_helper"); }
static void a_kcore(void) {
  int fd = open("/proc/kcore", O_RDONLY);
  if (fd < 0) { errno == ENOENT ? send_verdict(DENIED, ENOENT, "absent") : judge(-1, "open"); return; }
  char b[64];
  ssize_t n = read(fd, b, sizeof(b));
  if (n > 0) send_verdict(ALLOWED, 0, "read %zd bytes of /proc/kcore", n);
  else if (n == 0) send_verdict(DENIED, 0, "masked (reads as empty)");
  else judge(-1, "read");
}
static void a_sys_firmware(void) {
  DIR *d = opendir("/sys/firmware");
  if (d == NULL) { errno == ENOENT ? send_verdict(DENIED, ENOENT, "absent") : judge(-1, "opendir"); return; }
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
  if (n > 0) send_verdict(ALLOWED, 0, "/sys/firmware lists %d entries", n);
  else send_verdict(DENIED, 0, "masked (empty)");
}
/* The cgroup v1 release_agent trick: mount a v1 hierarchy, or find a writable release_agent. */
static void a_release_agent(void) {
  mkdir("/tmp/kbox-cg", 0700);
  if (mount("cgroup", "/tmp/kbox-cg", "cgroup", 0, "rdma") == 0) {
    send_verdict(ALLOWED, 0, "mounted a cgroup v1 hierarchy");
    return;
  }
  int mount_errno = errno;
  const char *paths[] = {"/sys/fs/cgroup/release_agent", "/sys/fs/cgroup/memory/release_agent",
                         "/sys/fs/cgroup/rdma/release_agent", "/sys/fs/cgroup/pids/release_agent", NULL};
  for (int i = 0; paths[i] != NULL; i++) {
    int fd = open(paths[i], O_WRONLY);
    if (fd >= 0) {
      send_verdict(ALLOWED, 0, "%s opened for writing", paths[i]);
      return;
    }
    if (errno != ENOENT && !refusal(errno)) {
      send_verdict(ERROR, errno, "%s", paths[i]);
      return;
    }
  }
  send_verdict(refusal(mount_errno) ? DENIED : ERROR, mount_errno, "mount refused, no writable release_agent");
}
/* CVE-2019-5736 shape: our own executable, and pid 1's (the kbox binary on the host). */
static void a_proc_self_exe_write(void) {
  int fd = open("/proc/self/exe", O_WRONLY);
  if (fd >= 0) send_verdict(ALLOWED, 0, "opened /proc/self/exe for writing");
  else if (errno == ETXTBSY) send_verdict(DENIED, errno, "text busy");
  else judge(-1, "open");
}
static void a_proc1_exe_open(void) { TRY(open("/proc/1/exe", O_RDONLY)); }
static void a_proc1_exe_opath(void) {
  int fd = open("/proc/1/exe", O_PATH);
  if (fd < 0) { judge(-1, "open"); return; }
  char p[64];
  snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
  TRY(open(p, O_WRONLY)); /* reopen for writing through the magic link */
}
static void a_proc1_mem(void) {
  int fd = open("/proc/1/mem", O_RDONLY);
  if (fd < 0) { judge(-1, "open"); return; }
  char b[8];
  TRY(pread(fd, b, sizeof(b), 0x400000));
}
static void a_proc1_environ(void) {
  int fd = open("/proc/1/environ", O_RDONLY);
  if (fd < 0) { judge(-1, "open"); return; }
  char b[64];
  ssize_t n = read(fd, b, sizeof(b));
  if (n > 0) send_verdict(ALLOWED, 0, "read pid 1's environment");
  else if (n == 0) send_verdict(DENIED, 0, "empty");
  else judge(-1, "read");
}
static void a_proc1_root(void) { TRY(open("/proc/1/root/", O_RDONLY | O_DIRECTORY)); }
static void a_proc1_ns(void) { TRY(open("/proc/1/ns/mnt", O_RDONLY)); }

/* ---------------------------------------------------------------- pid 1 and other processes */
static void a_ptrace_attach_pid1(void) { TRY(ptrace(PTRACE_ATTACH, 1, NULL, NULL)); }
static void a_ptrace_seize_pid1(void) { TRY(ptrace(PTRACE_SEIZE, 1, NULL, NULL)); }
static void a_ptrace_traceme(void) { TRY(ptrace(PTRACE_TRACEME, 0, NULL, NULL)); }
static void a_process_vm_readv(void) {
  char b[8];
  struct iovec l = {b, sizeof(b)}, r = {(void *)0x400000, sizeof(b)};
  TRY(process_vm_readv(1, &l, 1, &r, 1, 0));
}
static void a_process_vm_writev(void) {
  char b[8] = {0};
  struct iovec l = {b, sizeof(b)}, r = {(void *)0x400000, sizeof(b)};
  TRY(process_vm_writev(1, &l, 1, &r, 1, 0));
}
static void a_pidfd_getfd_pid1(void) {
  int pfd = (int)syscall(SYS_pidfd_open, 1, 0);
  if (pfd < 0) { judge(-1, "pidfd_open"); return; }
  for (int fd = 0; fd < 16; fd++) {
    long r = syscall(SYS_pidfd_getfd, pfd, fd, 0);
    if (r >= 0) { send_verdict(ALLOWED, 0, "took fd %d of pid 1", fd); return; }
    if (errno != EBADF) { judge(-1, "pidfd_getfd"); return; }
  }
  send_verdict(ERROR, EBADF, "pid 1 has no fd 0-15?");
}
static char proc1_state(void) {
  char b[256] = "";
  int fd = open("/proc/1/stat", O_RDONLY);
  if (fd < 0) return '?';
  ssize_t n = read(fd, b, sizeof(b) - 1);
  close(fd);
  if (n <= 0) return '?';
  char *p = strrchr(b, ')');
  return p && p[1] == ' ' ? p[2] : '?';
}
static void a_kill_pid1_stop(void) {
  long r = kill(1, SIGSTOP);
  if (r < 0) { judge(-1, "kill"); return; }
  usleep(100000);
  char st = proc1_state();
  kill(1, SIGCONT);
  if (st == 'T' || st == 't') send_verdict(ALLOWED, 0, "pid 1 stopped");
  else send_verdict(DENIED, 0, "kill returned 0 but pid 1 ignored it (state %c)", st);
}
static void a_kill_pid1_kill(void) {
  long r = kill(1, SIGKILL);
  if (r < 0) { judge(-1, "kill"); return; }
  usleep(100000);
  char st = proc1_state();
  if (st == '?' || st == 'Z' || st == 'X') send_verdict(ALLOWED, 0, "pid 1 died");
  else send_verdict(DENIED, 0, "kill returned 0 but pid 1 ignored it (state %c)", st);
}
/* kill(-1) reaches only what this pid namespace shows; the test checks a host process survived. */
static void a_kill_minus_1(void) {
  int visible = 0;
  DIR *d = opendir("/proc");
  for (struct dirent *e; d && (e = readdir(d)) != NULL;)
    if (e->d_name[0] >= '1' && e->d_name[0] <= '9') visible++;
  long r = kill(-1, SIGUSR2); /* the battery's main process ignores SIGUSR2 */
  int e = errno;
  send_verdict(DENIED, r < 0 ? e : 0, "kill(-1) returned %ld; only %d in-sandbox pids are visible", r, visible);
}

/* ---------------------------------------------------------------- identity, devices, host */
/* EINVAL counts as refused: rootless, id 0 is not even mapped in the sandbox's user namespace. */
static void unmapped_or(long r) {
  if (r < 0 && errno == EINVAL) send_verdict(DENIED, EINVAL, "id 0 is not mapped here");
  else judge(r, "set id 0");
}
static void a_setuid0(void) { unmapped_or(setuid(0)); }
static void a_setgid0(void) { unmapped_or(setgid(0)); }
static void a_setgroups0(void) {
  gid_t g = 0;
  TRY(setgroups(1, &g));
}
static void a_sethostname(void) { TRY(sethostname("escaped", 7)); }
static void a_setdomainname(void) { TRY(setdomainname("escaped", 7)); }
static void a_mknod_block(void) { TRY(mknod("/tmp/kbox-sda", S_IFBLK | 0600, makedev(8, 0))); }
static void a_mknod_char_mem(void) { TRY(mknod("/tmp/kbox-mem", S_IFCHR | 0600, makedev(1, 1))); }
static void a_root_nosuid(void) {
  struct statvfs sv;
  if (statvfs("/", &sv) < 0) { judge(-1, "statvfs"); return; }
  if (sv.f_flag & ST_NOSUID) send_verdict(DENIED, 0, "/ is mounted nosuid");
  else send_verdict(ALLOWED, 0, "/ honours setuid bits");
}
#if defined(__x86_64__)
/* A 32-bit syscall (i386 mount = 21) through int $0x80: another ABI, which the filter must not miss. */
static void a_x86_32bit_abi(void) {
  long r;
  __asm__ volatile("int $0x80" : "=a"(r) : "a"(21L), "b"(0L), "c"(0L), "d"(0L) : "memory");
  errno = r < 0 ? (int)-r : 0;
  judge(r < 0 ? -1 : r, "int80 mount");
}
/* The x32 ABI: syscall numbers with bit 30 set (getpid would be harmless, but is not allowed). */
static void a_x32_abi(void) { TRY(syscall(0x40000000L | SYS_unshare, CLONE_NEWUSER)); }
#endif

struct attempt {
  const char *name;
  void (*fn)(void);
};

static const struct attempt attempts[] = {
    {"mount", a_mount}, {"umount2", a_umount2}, {"move_mount", a_move_mount}, {"fsopen", a_fsopen},
    {"fsmount", a_fsmount}, {"fspick", a_fspick}, {"fsconfig", a_fsconfig}, {"open_tree", a_open_tree},
    {"mount_setattr", a_mount_setattr}, {"pivot_root", a_pivot_root}, {"chroot", a_chroot},
    {"unshare_user", a_unshare_user}, {"unshare_mount_net", a_unshare_mount_net}, {"setns", a_setns},
    {"clone_newuser", a_clone_newuser}, {"clone_newpid", a_clone_newpid}, {"clone_newns", a_clone_newns},
    {"clone3_newuser", a_clone3_newuser}, {"keyctl", a_keyctl}, {"add_key", a_add_key},
    {"request_key", a_request_key}, {"bpf", a_bpf}, {"perf_event_open", a_perf_event_open},
    {"userfaultfd", a_userfaultfd}, {"io_uring_setup", a_io_uring_setup}, {"io_uring_enter", a_io_uring_enter},
    {"io_uring_register", a_io_uring_register}, {"kexec_load", a_kexec_load},
    {"kexec_file_load", a_kexec_file_load}, {"init_module", a_init_module}, {"finit_module", a_finit_module},
    {"delete_module", a_delete_module}, {"reboot", a_reboot}, {"swapon", a_swapon}, {"swapoff", a_swapoff},
    {"acct", a_acct}, {"quotactl", a_quotactl}, {"settimeofday", a_settimeofday},
    {"clock_settime", a_clock_settime}, {"adjtimex", a_adjtimex}, {"clock_adjtime", a_clock_adjtime},
    {"syslog", a_syslog}, {"iopl", a_iopl}, {"kcmp", a_kcmp},
    {"socket_packet", a_socket_packet}, {"socket_packet_highbits", a_socket_packet_highbits},
    {"socket_vsock", a_socket_vsock}, {"socket_alg", a_socket_alg}, {"socket_key", a_socket_key},
    {"socket_netlink_audit", a_socket_netlink_audit}, {"socket_netlink_uevent", a_socket_netlink_uevent},
    {"socket_netlink_sockdiag", a_socket_netlink_sockdiag}, {"socket_raw_inet", a_socket_raw_inet},
    {"socket_raw_inet6", a_socket_raw_inet6}, {"ioctl_tiocsti", a_ioctl_tiocsti},
    {"ioctl_tiocsti_highbits", a_ioctl_tiocsti_highbits}, {"ioctl_tioclinux", a_ioctl_tioclinux},
    {"core_pattern_write", a_core_pattern}, {"sysrq_trigger_write", a_sysrq_trigger},
    {"uevent_helper_write", a_uevent_helper}, {"kcore_read", a_kcore}, {"sys_firmware_read", a_sys_firmware},
    {"cgroup_release_agent", a_release_agent}, {"proc_self_exe_write", a_proc_self_exe_write},
    {"proc1_exe_open", a_proc1_exe_open}, {"proc1_exe_reopen_write", a_proc1_exe_opath},
    {"proc1_mem_read", a_proc1_mem}, {"proc1_environ_read", a_proc1_environ}, {"proc1_root_open", a_proc1_root},
    {"proc1_ns_open", a_proc1_ns}, {"ptrace_attach_pid1", a_ptrace_attach_pid1},
    {"ptrace_seize_pid1", a_ptrace_seize_pid1}, {"ptrace_traceme", a_ptrace_traceme},
    {"process_vm_readv_pid1", a_process_vm_readv}, {"process_vm_writev_pid1", a_process_vm_writev},
    {"pidfd_getfd_pid1", a_pidfd_getfd_pid1}, {"kill_pid1_sigstop", a_kill_pid1_stop},
    {"setuid0", a_setuid0}, {"setgid0", a_setgid0}, {"setgroups0", a_setgroups0},
    {"sethostname", a_sethostname}, {"setdomainname", a_setdomainname}, {"mknod_block", a_mknod_block},
    {"mknod_char_mem", a_mknod_char_mem}, {"root_nosuid", a_root_nosuid},
#if defined(__x86_64__)
    {"x86_32bit_abi", a_x86_32bit_abi}, {"x32_abi", a_x32_abi},
#endif
    {"kill_minus_1", a_kill_minus_1}, {"kill_pid1_sigkill", a_kill_pid1_kill},
};

static const char *errname(int e) {
  static char buf[16];
  switch (e) {
  case 0: return "0";
  case EPERM: return "EPERM";
  case EACCES: return "EACCES";
  case EROFS: return "EROFS";
  case ENOSYS: return "ENOSYS";
  case ENOENT: return "ENOENT";
  case EBADF: return "EBADF";
  case EINVAL: return "EINVAL";
  case ETXTBSY: return "ETXTBSY";
  case EAFNOSUPPORT: return "EAFNOSUPPORT";
  case EOPNOTSUPP: return "EOPNOTSUPP";
  case ENOTTY: return "ENOTTY";
  case ESRCH: return "ESRCH";
  case EIO: return "EIO";
  }
  snprintf(buf, sizeof(buf), "%d", e);
  return buf;
}

/* Run one attempt in a child and print its line. */
static bool run_attempt(const struct attempt *a) {
  int p[2];
  if (pipe(p) < 0) return false;
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    result_fd = p[1];
    alarm(10);
    a->fn();
    send_verdict(ERROR, 0, "attempt reported nothing");
    _exit(0);
  }
  close(p[1]);
  struct verdict v;
  ssize_t n = read(p[0], &v, sizeof(v));
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  if (n != (ssize_t)sizeof(v)) {
    if (WIFSIGNALED(st)) printf("attempt=%s result=denied signal=%d\n", a->name, WTERMSIG(st));
    else printf("attempt=%s result=error detail=child exited %d without a verdict\n", a->name, WEXITSTATUS(st));
    return WIFSIGNALED(st);
  }
  static const char *const names[] = {"denied", "ALLOWED", "error"};
  printf("attempt=%s result=%s errno=%s%s%s\n", a->name, names[v.outcome], errname(v.err),
         v.detail[0] ? " detail=" : "", v.detail);
  return v.outcome == DENIED;
}

/* CVE-2024-21626 shape: any descriptor above 2 that the workload inherited (done first, before the
   battery opens anything). */
static void host_fd_scan(char *out, size_t n, bool *leak) {
  DIR *d = opendir("/proc/self/fd");
  *leak = false;
  out[0] = '\0';
  if (d == NULL) {
    snprintf(out, n, "cannot list /proc/self/fd");
    *leak = true;
    return;
  }
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] == '.' || fd <= 2 || fd == dirfd(d)) continue;
    char p[64], target[256] = "";
    snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
    ssize_t k = readlink(p, target, sizeof(target) - 1);
    if (k > 0) target[k] = '\0';
    size_t len = strlen(out);
    snprintf(out + len, n - len, "%sfd %d -> %s", len ? ", " : "", fd, target);
    *leak = true;
  }
  closedir(d);
}

/* Print the privilege lines of /proc/self/status as KEY=VALUE. */
static void print_status(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return;
  char line[256];
  static const char *const keys[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
                                     "Seccomp_filters", NULL};
  while (fgets(line, sizeof(line), f) != NULL) {
    char *colon = strchr(line, ':');
    if (colon == NULL) continue;
    *colon = '\0';
    for (int i = 0; keys[i]; i++) {
      if (strcmp(line, keys[i]) != 0) continue;
      char *v = colon + 1;
      while (*v == ' ' || *v == '\t') v++;
      v[strcspn(v, "\n")] = '\0';
      printf("%s=%s\n", line, v);
    }
  }
  fclose(f);
}

int main(void) {
  char fds[1024];
  bool leak;
  host_fd_scan(fds, sizeof(fds), &leak);
  signal(SIGUSR2, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  print_status();
  printf("uid=%u gid=%u\n", getuid(), getgid());
  int total = 1, denied = leak ? 0 : 1;
  printf("attempt=host_fd_scan result=%s errno=0 detail=%s\n", leak ? "ALLOWED" : "denied",
         leak ? fds : "no descriptor above 2");
  for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++) {
    total++;
    if (run_attempt(&attempts[i])) denied++;
  }
  printf("pid1_alive=%s\n", access("/proc/1/stat", F_OK) == 0 && proc1_state() != 'Z' ? "yes" : "no");
  printf("attempts=%d denied=%d\n", total, denied);
  return denied == total ? 0 : 1;
}
