/* The reader thread of normalizer.backends.reader in C: a pthread that never takes the GIL.
 *
 * Same protocol as reader.PyBufferedReader (read its module docstring): the thread polls the kernel fd and a
 * stop pipe; with room in the buffer (at least MIN_ROOM bytes below the capacity) it takes the mutex, reads
 * once, stamps CLOCK_MONOTONIC after the read (CLOCK_REALTIME before it), asks FIONREAD, appends the chunk and
 * sets the eventfd if the buffer was empty; it releases the mutex. The consumer (holding the GIL) takes chunks
 * under the same mutex, clears the eventfd when it takes the last one, and signals the condition variable the
 * thread waits on when the buffer is full. idle_at checks "nothing buffered, no read in flight, kernel queue
 * empty" under the mutex. A read error stops the thread; take() raises it after the chunks before it.
 *
 * Why C: a Python thread needs the GIL after every system call (poll, read, ioctl) and waits up to the switch
 * interval (5 ms) for it each time while the consumer computes, and not at all during a garbage-collection
 * pause; this one drains the kernel queue whatever Python does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "../_cevent.h"

#define MIN_ROOM 4096
/* The thread leaves queued events to a consumer that keeps up (take() reads the fd itself when nothing is
 * buffered): it reads only once the consumer is behind (a chunk is still buffered; then at most once every
 * BEHIND_PACING_NS), the kernel holds at least `backstop` (FIONREAD's unit; the caller passes a quarter of a
 * full queue), or events have waited BACKSTOP_NS. */
#define BACKSTOP_NS (100 * 1000000LL)
/* While a chunk waits (the consumer is behind), the thread reads at most once a millisecond, unless `backstop`
 * is queued: a storm then joins the waiting chunk in reads of a millisecond's events each, instead of a read
 * (and a wake-up of this thread) per few events, CPU taken from the consumer it waits for. */
#define BEHIND_PACING_NS (1000000LL)

typedef struct chunk {
    struct chunk *next;
    int64_t t_ns;
    double wall;
    int backlog;
    size_t n, cap;
    char data[];
} chunk;

typedef struct {
    PyObject_HEAD
    int fd;
    int notify_fd;
    int stop_r, stop_w;
    size_t capacity, read_size, buffered, peak;
    int backstop;
    unsigned long long reads, full;
    int64_t last_read_ns; /* CLOCK_MONOTONIC of the thread's last read (its pacing while behind) */
    chunk *head, *tail;
    chunk **tail_link; /* the pointer that points at tail: &head or &(tail's predecessor)->next */
    pthread_mutex_t mu;
    pthread_cond_t room;
    pthread_t thread;
    long tid; /* the thread's kernel id (gettid), set by the thread as it starts; 0 before */
    pthread_cond_t have_tid;
    int started, joined, stopping, running, err;
    char *ibuf; /* the consumer's own reads (take() with nothing buffered) */
} Reader;

static int64_t now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void notify_set(Reader *r) {
    uint64_t one = 1;
    ssize_t ignored = write(r->notify_fd, &one, sizeof one);
    (void)ignored;
}

static void notify_clear(Reader *r) {
    uint64_t v;
    ssize_t ignored = read(r->notify_fd, &v, sizeof v);
    (void)ignored;
}

/* Events are queued: wait while the consumer can still take them itself. 1: read now; 0: they were taken (or
 * the thread is stopping: the main loop sees it). */
static int backstop(Reader *r) {
    int64_t first = now_ns(CLOCK_MONOTONIC);
    struct pollfd sp;
    sp.fd = r->stop_r;
    sp.events = POLLIN;
    for (;;) {
        int q = 0, behind;
        int64_t last;
        pthread_mutex_lock(&r->mu);
        behind = r->head != NULL;
        last = r->last_read_ns;
        if (r->stopping) {
            pthread_mutex_unlock(&r->mu);
            return 0;
        }
        pthread_mutex_unlock(&r->mu);
        if (ioctl(r->fd, FIONREAD, &q) < 0)
            return 1; /* (an fd without FIONREAD: read, and report what read says) */
        if (q == 0)
            return 0;
        int64_t now = now_ns(CLOCK_MONOTONIC);
        if (q >= r->backstop || (behind && now - last >= BEHIND_PACING_NS) || now - first >= BACKSTOP_NS)
            return 1;
        if (poll(&sp, 1, 1) > 0)
            return 0;
    }
}

static void *run(void *arg) {
    Reader *r = (Reader *)arg;
    pthread_mutex_lock(&r->mu);
    r->tid = syscall(SYS_gettid);
    pthread_cond_broadcast(&r->have_tid);
    pthread_mutex_unlock(&r->mu);
    char *buf = malloc(r->read_size);
    struct pollfd p[2];
    p[0].fd = r->fd;
    p[0].events = POLLIN;
    p[1].fd = r->stop_r;
    p[1].events = POLLIN;
    if (buf == NULL) {
        pthread_mutex_lock(&r->mu);
        r->err = ENOMEM;
        notify_set(r);
        r->running = 0;
        pthread_mutex_unlock(&r->mu);
        return NULL;
    }
    for (;;) {
        size_t size;
        pthread_mutex_lock(&r->mu);
        if (r->capacity - r->buffered < MIN_ROOM && !r->stopping) {
            r->full++;
            while (r->capacity - r->buffered < MIN_ROOM && !r->stopping)
                pthread_cond_wait(&r->room, &r->mu);
        }
        if (r->stopping) {
            pthread_mutex_unlock(&r->mu);
            break;
        }
        size = r->capacity - r->buffered;
        if (size > r->read_size)
            size = r->read_size;
        pthread_mutex_unlock(&r->mu);

        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            pthread_mutex_lock(&r->mu);
            r->err = errno;
            notify_set(r);
            pthread_mutex_unlock(&r->mu);
            break;
        }
        if (p[1].revents)
            break;
        if (!backstop(r))
            continue;

        pthread_mutex_lock(&r->mu);
        if (r->stopping) {
            pthread_mutex_unlock(&r->mu);
            break;
        }
        double wall = (double)now_ns(CLOCK_REALTIME) / 1e9;
        /* A chunk still waits: read what fills it up to read_size (if that leaves room for a whole event), so
         * this read joins it below; the rest stays queued for the next one. */
        if (r->tail != NULL && r->read_size - r->tail->n >= MIN_ROOM && r->read_size - r->tail->n < size)
            size = r->read_size - r->tail->n;
        ssize_t n = read(r->fd, buf, size);
        if (n < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR) {
                pthread_mutex_unlock(&r->mu);
                continue;
            }
            r->err = e;
            notify_set(r);
            pthread_mutex_unlock(&r->mu);
            break;
        }
        if (n == 0) {
            pthread_mutex_unlock(&r->mu);
            continue;
        }
        int64_t t = now_ns(CLOCK_MONOTONIC);
        int backlog = 0;
        if (ioctl(r->fd, FIONREAD, &backlog) < 0)
            backlog = 0;
        r->last_read_ns = t;
        chunk *c = r->tail;
        if (c != NULL && c->n + (size_t)n <= r->read_size) {
            /* The consumer has not taken the last chunk yet: this read joins it (one batch of up to read_size
             * bytes, with this read's time and FIONREAD, the first read's wall time), so a consumer that fell
             * behind takes what waits in a few large batches instead of one small one per read of the thread
             * (reader.py's module docstring, "Batches", says why the joined chunk is exact). */
            if (c->n + (size_t)n > c->cap) {
                size_t cap = c->cap * 2;
                if (cap < c->n + (size_t)n)
                    cap = c->n + (size_t)n;
                if (cap > r->read_size)
                    cap = r->read_size;
                chunk *g = realloc(c, sizeof(chunk) + cap);
                if (g == NULL) {
                    r->err = ENOMEM;
                    notify_set(r);
                    pthread_mutex_unlock(&r->mu);
                    break;
                }
                *r->tail_link = g;
                r->tail = c = g;
                c->cap = cap;
            }
            memcpy(c->data + c->n, buf, (size_t)n);
            c->n += (size_t)n;
            c->t_ns = t;
            c->backlog = backlog;
        } else {
            c = malloc(sizeof(chunk) + (size_t)n);
            if (c == NULL) {
                r->err = ENOMEM;
                notify_set(r);
                pthread_mutex_unlock(&r->mu);
                break;
            }
            c->next = NULL;
            c->t_ns = t;
            c->wall = wall;
            c->backlog = backlog;
            c->n = c->cap = (size_t)n;
            memcpy(c->data, buf, (size_t)n);
            if (r->tail == NULL) {
                r->head = r->tail = c;
                r->tail_link = &r->head;
                notify_set(r);
            } else {
                r->tail->next = c;
                r->tail_link = &r->tail->next;
                r->tail = c;
            }
        }
        r->buffered += (size_t)n;
        r->reads++;
        if (r->buffered > r->peak)
            r->peak = r->buffered;
        pthread_mutex_unlock(&r->mu);
    }
    free(buf);
    pthread_mutex_lock(&r->mu);
    r->running = 0;
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* -- the consumer's side ------------------------------------------------------------------------------- */

static int Reader_init(Reader *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"fd", "capacity", "read_size", "backstop", NULL};
    int fd, backstop = 65536;
    Py_ssize_t capacity, read_size;
    int fds[2];
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "inn|i", kwlist, &fd, &capacity, &read_size, &backstop))
        return -1;
    self->backstop = backstop < 1 ? 1 : backstop;
    if (capacity < MIN_ROOM || read_size < MIN_ROOM) {
        PyErr_SetString(PyExc_ValueError, "capacity and read_size must be at least 4096 bytes");
        return -1;
    }
    if (self->notify_fd > 0) {
        PyErr_SetString(PyExc_RuntimeError, "already initialized");
        return -1;
    }
    self->fd = fd;
    self->capacity = (size_t)capacity;
    self->read_size = (size_t)(read_size < capacity ? read_size : capacity);
    self->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->notify_fd < 0) {
        self->notify_fd = -1;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->stop_r = fds[0];
    self->stop_w = fds[1];
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->room, NULL);
    pthread_cond_init(&self->have_tid, NULL);
    return 0;
}

static PyObject *Reader_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Reader *self = (Reader *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->fd = self->notify_fd = self->stop_r = self->stop_w = -1;
    }
    return (PyObject *)self;
}

static int check_init(Reader *self) {
    if (self->stop_r < 0 && !self->joined) {
        PyErr_SetString(PyExc_ValueError, "reader not initialized");
        return -1;
    }
    return 0;
}

static PyObject *Reader_start(Reader *self, PyObject *unused) {
    if (check_init(self) < 0)
        return NULL;
    if (!self->started) {
        self->running = 1;
        int rc = pthread_create(&self->thread, NULL, run, self);
        if (rc != 0) {
            self->running = 0;
            errno = rc;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        self->started = 1;
        /* Wait (without the GIL: microseconds) until the thread has said who it is, so native_id() answers
         * right after start(), as threading.Thread.native_id does. */
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&self->mu);
        while (self->tid == 0)
            pthread_cond_wait(&self->have_tid, &self->mu);
        pthread_mutex_unlock(&self->mu);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static PyObject *Reader_native_id(Reader *self, PyObject *unused) {
    if (!self->started)
        Py_RETURN_NONE;
    return PyLong_FromLong(self->tid);
}

static void stop_thread(Reader *self) {
    if (self->stop_w < 0)
        return;
    pthread_mutex_lock(&self->mu);
    self->stopping = 1;
    pthread_cond_broadcast(&self->room);
    pthread_mutex_unlock(&self->mu);
    char z = 0;
    ssize_t ignored = write(self->stop_w, &z, 1);
    (void)ignored;
    if (self->started && !self->joined) {
        Py_BEGIN_ALLOW_THREADS
        pthread_join(self->thread, NULL);
        Py_END_ALLOW_THREADS
        self->joined = 1;
    }
    close(self->stop_r);
    close(self->stop_w);
    self->stop_r = self->stop_w = -1;
}

static PyObject *Reader_stop(Reader *self, PyObject *unused) {
    stop_thread(self);
    Py_RETURN_NONE;
}

static void free_chunks(Reader *self) {
    chunk *c = self->head;
    while (c != NULL) {
        chunk *next = c->next;
        free(c);
        c = next;
    }
    self->head = self->tail = NULL;
    self->tail_link = NULL;
    self->buffered = 0;
}

static PyObject *Reader_close(Reader *self, PyObject *unused) {
    stop_thread(self);
    free_chunks(self);
    free(self->ibuf);
    self->ibuf = NULL;
    if (self->notify_fd >= 0) {
        close(self->notify_fd);
        self->notify_fd = -1;
    }
    Py_RETURN_NONE;
}

static PyObject *Reader_take(Reader *self, PyObject *unused) {
    chunk *c;
    int err;
    pthread_mutex_lock(&self->mu);
    c = self->head;
    if (c == NULL && self->err == 0) {
        /* Nothing buffered: read the fd here, under the lock (so in order), rather than wait for the thread to
         * wake up: a consumer that keeps up reads as fresh as without the thread. */
        if (self->ibuf == NULL)
            self->ibuf = malloc(self->read_size);
        if (self->ibuf != NULL) {
            double wall = (double)now_ns(CLOCK_REALTIME) / 1e9;
            ssize_t n = read(self->fd, self->ibuf, self->read_size);
            int e = errno;
            if (n > 0) {
                int64_t t = now_ns(CLOCK_MONOTONIC);
                int backlog = 0;
                if (ioctl(self->fd, FIONREAD, &backlog) < 0)
                    backlog = 0;
                self->reads++;
                pthread_mutex_unlock(&self->mu);
                return Py_BuildValue("(LdiN)", (long long)t, wall, backlog,
                                     PyBytes_FromStringAndSize(self->ibuf, (Py_ssize_t)n));
            }
            if (n < 0 && e != EAGAIN && e != EWOULDBLOCK && e != EINTR) {
                pthread_mutex_unlock(&self->mu);
                errno = e;
                return PyErr_SetFromErrno(PyExc_OSError);
            }
        }
    }
    if (c != NULL) {
        self->head = c->next;
        if (self->head == NULL) {
            self->tail = NULL;
            self->tail_link = NULL;
            if (self->err == 0)
                notify_clear(self);
        } else if (self->tail_link == &c->next) {
            self->tail_link = &self->head; /* the tail is the head now */
        }
        self->buffered -= c->n;
        pthread_cond_signal(&self->room);
    }
    err = self->err;
    pthread_mutex_unlock(&self->mu);
    if (c == NULL) {
        if (err != 0) {
            errno = err;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        Py_RETURN_NONE;
    }
    PyObject *out = Py_BuildValue("(LdiN)", (long long)c->t_ns, c->wall, c->backlog,
                                  PyBytes_FromStringAndSize(c->data, (Py_ssize_t)c->n));
    free(c);
    return out;
}

static PyObject *Reader_idle_at(Reader *self, PyObject *unused) {
    int64_t t;
    int q = -1;
    int busy;
    pthread_mutex_lock(&self->mu);
    busy = self->head != NULL || self->err != 0;
    if (!busy) {
        t = now_ns(CLOCK_MONOTONIC);
        if (ioctl(self->fd, FIONREAD, &q) < 0)
            q = -1;
    }
    pthread_mutex_unlock(&self->mu);
    if (busy || q != 0)
        Py_RETURN_NONE;
    return PyLong_FromLongLong((long long)t);
}

static PyObject *Reader_fileno(Reader *self, PyObject *unused) {
    return PyLong_FromLong(self->notify_fd);
}

static PyObject *Reader_buffered_data(Reader *self, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    pthread_mutex_lock(&self->mu);
    for (chunk *c = self->head; c != NULL; c = c->next) {
        PyObject *b = PyBytes_FromStringAndSize(c->data, (Py_ssize_t)c->n);
        if (b == NULL || PyList_Append(out, b) < 0) {
            Py_XDECREF(b);
            pthread_mutex_unlock(&self->mu);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(b);
    }
    pthread_mutex_unlock(&self->mu);
    return out;
}

static PyObject *Reader_stats(Reader *self, PyObject *unused) {
    size_t buffered, peak;
    unsigned long long reads, full;
    int running;
    pthread_mutex_lock(&self->mu);
    buffered = self->buffered;
    peak = self->peak;
    reads = self->reads;
    full = self->full;
    running = self->running;
    pthread_mutex_unlock(&self->mu);
    return Py_BuildValue("(nnKKi)", (Py_ssize_t)buffered, (Py_ssize_t)peak, reads, full, running);
}

static void Reader_dealloc(Reader *self) {
    if (self->stop_w >= 0 || self->notify_fd >= 0 || self->head != NULL) {
        stop_thread(self);
        free_chunks(self);
        if (self->notify_fd >= 0)
            close(self->notify_fd);
    }
    free(self->ibuf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Reader_methods[] = {
    {"start", (PyCFunction)Reader_start, METH_NOARGS, "Start the thread (once)."},
    {"stop", (PyCFunction)Reader_stop, METH_NOARGS, "Stop the thread and join it; buffered chunks stay."},
    {"close", (PyCFunction)Reader_close, METH_NOARGS, "Stop, drop the buffer, close the eventfd."},
    {"take", (PyCFunction)Reader_take, METH_NOARGS, "The oldest chunk (t_ns, wall, backlog, data) or None."},
    {"idle_at", (PyCFunction)Reader_idle_at, METH_NOARGS, "Monotonic ns now if nothing is buffered or queued."},
    {"fileno", (PyCFunction)Reader_fileno, METH_NOARGS, "The eventfd, readable while a chunk waits."},
    {"buffered_data", (PyCFunction)Reader_buffered_data, METH_NOARGS, "The buffered chunks' bytes."},
    {"stats", (PyCFunction)Reader_stats, METH_NOARGS, "(buffered, peak, reads, full, running)."},
    {"native_id", (PyCFunction)Reader_native_id, METH_NOARGS, "The thread's kernel id once started, else None."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "normalizer.backends._ringreader.Reader",
    .tp_doc = "A pthread reading a kernel fd into a bounded buffer of chunks, without the GIL.",
    .tp_basicsize = sizeof(Reader),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Reader_new,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_methods = Reader_methods,
};

/* parse_inotify(buf: bytes, n: int) -> list[(wd, mask, cookie, name)] | None
 *
 * The C twin of normalizer.backends._inotify_sys._parse_py (the reference; the differential test holds the two
 * to identical results): consecutive struct inotify_event records in the first n bytes, each name with its
 * trailing NULs stripped (rstrip(b"\0")). None where the reference raises (the last record runs past n): the
 * caller then runs the reference, which raises with its exact message. */
static PyObject *parse_inotify(PyObject *module, PyObject *args) {
    PyObject *buf;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "O!n:parse_inotify", &PyBytes_Type, &buf, &n))
        return NULL;
    if (n < 0 || n > PyBytes_GET_SIZE(buf)) {
        PyErr_SetString(PyExc_ValueError, "n is outside the buffer");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(buf);
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    uint64_t off = 0, size = (uint64_t)n;
    while (off + 16 <= size) {
        int32_t wd;
        uint32_t mask, cookie, len;
        memcpy(&wd, data + off, 4);
        memcpy(&mask, data + off + 4, 4);
        memcpy(&cookie, data + off + 8, 4);
        memcpy(&len, data + off + 12, 4);
        uint64_t start = off + 16, end = start + len;
        if (end > size) { /* truncated: the reference raises */
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        uint64_t stop = end;
        while (stop > start && data[stop - 1] == 0)
            stop--;
        PyObject *name = PyBytes_FromStringAndSize((const char *)data + start, (Py_ssize_t)(stop - start));
        PyObject *item = name == NULL ? NULL : inotify_event_tuple((long)wd, (unsigned long)mask,
                                                                   (unsigned long)cookie, name);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        if (PyList_Append(out, item) < 0) {
            Py_DECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
        off = end;
    }
    if (off != size) { /* a header cut short: the reference raises */
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    return out;
}

static PyMethodDef module_methods[] = {
    {"parse_inotify", parse_inotify, METH_VARARGS,
     "parse_inotify(buf, n): the inotify events in buf[:n] as (wd, mask, cookie, name) tuples, or None if the "
     "last one is truncated."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ringreader", "The GIL-free reader thread (normalizer.backends.reader).", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__ringreader(void) {
    if (PyType_Ready(&ReaderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
