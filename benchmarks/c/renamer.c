/*
 * renamer: rename files in one directory as fast as the kernel allows, or at a fixed rate.
 * Built by benchmarks/crenamer.py with the machine's gcc into a temporary directory (never committed).
 *
 * Files: DIR/s0 .. DIR/s15, each holding a0..a63, renamed to b<i> and back within their directory, one
 * directory after the other. Small directories keep rename(2) on ext4's fast path (a directory with a few
 * hundred entries is hashed, and renames in it cost twice as much here); 16 of them make the same (directory,
 * name) come back only every 2048 renames, far beyond the 128 most recent events fanotify merges with.
 *
 *   renamer setup DIR
 *       create the directories and files, and exit (run it before the watcher starts).
 *   renamer flat DIR SECONDS [nowatch]
 *       rename flat out for SECONDS. Unless "nowatch", every directory is watched by an inotify fd of this
 *       process (MOVED_FROM | MOVED_TO) and a second thread drains it with plain read() calls every 0.5 ms,
 *       so the kernel does all the work of producing and delivering the events: the rate measured is the
 *       rate at which this machine's kernel produces rename events for a consumer that costs (almost) nothing.
 *   renamer paced DIR SECONDS RATE
 *       RATE renames per second, spread over 1 ms slots; no inotify fd of its own.
 *
 * Prints one JSON object on stdout. CLOCK_MONOTONIC throughout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NDIRS 16
#define NFILES 64

static char name_a[NDIRS][NFILES][24], name_b[NDIRS][NFILES][24];
static atomic_int stop_reader;
static long long events_read, overflows, reads;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "renamer: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void do_rename(const char *a, const char *b) {
    if (rename(a, b) != 0) die("rename");
}

static void *reader(void *arg) {
    int fd = *(int *)arg;
    static char buf[256 * 1024] __attribute__((aligned(8)));
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (;;) {
        int r = poll(&p, 1, 10);
        if (r <= 0) {
            if (atomic_load(&stop_reader)) break;
            continue;
        }
        for (;;) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n <= 0) break;
            reads++;
            for (char *q = buf; q < buf + n;) {
                struct inotify_event *e = (struct inotify_event *)q;
                if (e->mask & IN_Q_OVERFLOW)
                    overflows++;
                else
                    events_read++;
                q += sizeof *e + e->len;
            }
        }
        /* Read in batches, as a real consumer under load does: a reader that takes every event alone
         * contends with the renamer for the queue's lock and slows it down. */
        usleep(500);
    }
    return NULL;
}

static void setup(const char *dir, int create) {
    if (chdir(dir) != 0) die("chdir");
    for (int d = 0; d < NDIRS; d++) {
        char sub[16];
        snprintf(sub, sizeof sub, "s%d", d);
        if (create && mkdir(sub, 0755) != 0 && errno != EEXIST) die("mkdir");
        for (int i = 0; i < NFILES; i++) {
            snprintf(name_a[d][i], sizeof name_a[d][i], "s%d/a%d", d, i);
            snprintf(name_b[d][i], sizeof name_b[d][i], "s%d/b%d", d, i);
            if (!create) continue;
            unlink(name_b[d][i]);
            int fd = open(name_a[d][i], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            if (fd < 0) die("open");
            close(fd);
        }
    }
}

static int flat(const char *dir, double seconds, int watch) {
    setup(dir, 1);
    int fd = -1;
    pthread_t th;
    if (watch) {
        fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (fd < 0) die("inotify_init1");
        for (int d = 0; d < NDIRS; d++) {
            char sub[16];
            snprintf(sub, sizeof sub, "s%d", d);
            if (inotify_add_watch(fd, sub, IN_MOVED_FROM | IN_MOVED_TO) < 0) die("inotify_add_watch");
        }
        if (pthread_create(&th, NULL, reader, &fd) != 0) die("pthread_create");
    }
    long long n = 0, t0 = now_ns(), end = t0 + (long long)(seconds * 1e9), t1 = t0;
    while (t1 < end) {
        for (int d = 0; d < NDIRS; d++)
            for (int i = 0; i < NFILES; i++) do_rename(name_a[d][i], name_b[d][i]);
        for (int d = 0; d < NDIRS; d++)
            for (int i = 0; i < NFILES; i++) do_rename(name_b[d][i], name_a[d][i]);
        n += 2 * NDIRS * NFILES;
        t1 = now_ns();
    }
    if (watch) {
        usleep(50000);
        atomic_store(&stop_reader, 1);
        pthread_join(th, NULL);
        close(fd);
    }
    double el = (t1 - t0) / 1e9;
    printf("{\"mode\": \"flat\", \"watch\": %s, \"renames\": %lld, \"seconds\": %.6f, \"renames_per_s\": %.1f, "
           "\"events_per_s\": %.1f, \"events_read\": %lld, \"overflows\": %lld, \"reads\": %lld}\n",
           watch ? "true" : "false", n, el, n / el, 2 * n / el, events_read, overflows, reads);
    return 0;
}

static int paced(const char *dir, double seconds, double rate) {
    setup(dir, 0);
    char state[NDIRS * NFILES] = {0}; /* 0: named a<i>, 1: named b<i> */
    const long long slot = 1000000; /* 1 ms */
    double per_slot = rate / 1000.0, owed = 0.0;
    long long n = 0, t0 = now_ns(), end = t0 + (long long)(seconds * 1e9), next = t0;
    int i = 0;
    while (next < end) {
        owed += per_slot;
        while (owed >= 1.0) {
            int d = i / NFILES, f = i % NFILES;
            if (state[i])
                do_rename(name_b[d][f], name_a[d][f]);
            else
                do_rename(name_a[d][f], name_b[d][f]);
            state[i] ^= 1;
            i = (i + 1) % (NDIRS * NFILES);
            n++;
            owed -= 1.0;
        }
        next += slot;
        long long now = now_ns();
        if (now < next) {
            struct timespec ts = {.tv_sec = next / 1000000000LL, .tv_nsec = next % 1000000000LL};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
            }
        } else if (now - next > 20 * slot) {
            next = now; /* far behind: do not try to catch up in one go */
        }
    }
    long long t1 = now_ns();
    double el = (t1 - t0) / 1e9;
    printf("{\"mode\": \"paced\", \"renames\": %lld, \"seconds\": %.6f, \"target_renames_per_s\": %.1f, "
           "\"renames_per_s\": %.1f, \"events_per_s\": %.1f, \"t_start_ns\": %lld, \"t_end_ns\": %lld}\n",
           n, el, rate, n / el, 2 * n / el, t0, t1);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "setup") == 0) {
        setup(argv[2], 1);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "flat") == 0)
        return flat(argv[2], atof(argv[3]), !(argc >= 5 && strcmp(argv[4], "nowatch") == 0));
    if (argc >= 5 && strcmp(argv[1], "paced") == 0) return paced(argv[2], atof(argv[3]), atof(argv[4]));
    fprintf(stderr, "usage: renamer setup DIR | flat DIR SECONDS [nowatch] | paced DIR SECONDS RATE\n");
    return 2;
}
