/* Entry points of the verbs. Each takes argv with argv[0] = the verb and returns the exit code. */
#ifndef KBOX_COMMANDS_H
#define KBOX_COMMANDS_H

int kbox_cmd_run(int argc, char **argv);
int kbox_cmd_doctor(int argc, char **argv);
int kbox_cmd_exec(int argc, char **argv);
int kbox_cmd_ps(int argc, char **argv);
int kbox_cmd_inspect(int argc, char **argv);
int kbox_cmd_interrupt(int argc, char **argv);
int kbox_cmd_kill(int argc, char **argv);
int kbox_cmd_entrypoint(int argc, char **argv);
int kbox_cmd_kernelspec(int argc, char **argv);
int kbox_cmd_image(int argc, char **argv);
int kbox_cmd_audit(int argc, char **argv);
int kbox_cmd_warm(int argc, char **argv);

struct kbox_spec;
/* Kernel mode of `kbox run` (cmd/run_kernel.c, in kbox-kernel.so), once the options are parsed. */
int kbox_cmd_run_kernel(struct kbox_spec *spec);

#endif
