/*
 * The child processes of fault-slowreader (slowreader-load.c).  Each
 * reports to the parent over the pipe ctl: (what, value) records of one
 * char and one int.
 */
#pragma once

#include <sys/types.h>

#define FDS_PER_OPEN 253 /* pipes opened, or read ends sent away, per datagram */
#define ROUND_GAP_MS 20
#define MAX_ROUNDS 300
#define CONTROL_ROUNDS 3 /* a storm lasts 2 to 3 rounds before the cut */

/* Writes one report (what, value) to ctl. */
void load_report(int ctl, char what, int value);

/* Forks a child that reports over a pipe: returns 0 in the child, with the
 * write end in *ret_wr, and the child's pid in the parent, with the read
 * end in *ret_rd. */
pid_t load_fork(int *ret_rd, int *ret_wr);

/* The slow client: connects to path, opens k pipes ('o' k once done, 'e'
 * -errno on failure), then in rounds arms and readies all of them without
 * reading until the daemon cuts it off ('c' rounds; 'n' rounds if it never
 * was). */
void __attribute__((noreturn)) load_slow_main(const char *path, int k, int ctl);

/* The control load: the slow client's work on the kernel without the
 * daemon ('o' k once its pipes exist, 'd' rounds when done, 'e' -errno on
 * failure).  Both *_main functions own ctl and exit the process. */
void __attribute__((noreturn)) load_control_main(int k, int ctl);
