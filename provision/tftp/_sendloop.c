/* The lockstep send loop of one TFTP transfer (RFC 1350, with the options of RFC 2347/2348/2349
 * already agreed by the caller), in C: the pump's child calls it with the GIL released and does
 * nothing else until the file is sent. Same protocol as the engine's own loop (provision/tftp/engine.py),
 * which sends everything when this module is not built:
 *   - the OACK `first`, when given, is acknowledged by block 0;
 *   - DATA blocks 1.. of exactly the `size` told in the request's answer, the last one short (possibly
 *     empty), whatever the file does meanwhile: one that grew is sent to that size, one that shrank
 *     ends with an ERROR, never a short block the client would take for the end;
 *   - block numbers roll over past 65535;
 *   - a duplicate or stale ACK is ignored (a resend happens on timeout only: no Sorcerer's
 *     Apprentice), and it does not stretch the wait for the right one;
 *   - `retries` timeouts in a row, an ERROR from the client, or a socket error (an ICMP error on
 *     the connected socket) end the transfer.
 * The file is read 256 KB at a time with pread; each block goes out with one sendmsg (the 4-byte
 * header and a slice of that buffer, no copy) and is acknowledged by one recv, which the kernel
 * times out through SO_RCVTIMEO set here. Nothing here parses more than the 4 bytes of a packet
 * it receives, into a 16-byte buffer. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)
#define OP_DATA 3
#define OP_ACK 4
#define OP_ERROR 5

enum { GOT_ACK = 0, GONE = -1 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* What one received packet means for the block we wait for: 1 the right ACK, 0 ignore it,
 * -1 the client sent an ERROR. */
static int judge(const unsigned char *p, ssize_t n, unsigned block) {
    if (n >= 2 && p[0] == 0 && p[1] == OP_ERROR) return -1;
    if (n == 4 && p[0] == 0 && p[1] == OP_ACK && ((unsigned)p[2] << 8 | p[3]) == (block & 0xFFFF)) return 1;
    return 0;
}

/* The slow path, after a recv timed out or brought a stale packet: resend and wait, up to
 * `retries` times, each wait at most `seconds` whatever stale packets arrive in it. */
static int resend_until_acked(int s, struct msghdr *msg, unsigned block, int seconds, int retries,
                              int resend_first) {
    unsigned char buf[16];
    for (int attempt = 0; attempt < retries; attempt++) {
        if (resend_first || attempt > 0) {
            if (sendmsg(s, msg, 0) < 0 && errno != EINTR) return GONE;
        }
        double deadline = now() + seconds;
        for (;;) {
            double left = deadline - now();
            if (left <= 0) break;
            struct pollfd pfd = {.fd = s, .events = POLLIN};
            int r = poll(&pfd, 1, (int)(left * 1000) + 1);
            if (r < 0) {
                if (errno == EINTR) continue;
                return GONE;
            }
            if (r == 0) break;
            ssize_t n = recv(s, buf, sizeof buf, MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
                return GONE;  /* ECONNREFUSED: the client's port is closed */
            }
            int j = judge(buf, n, block);
            if (j == 1) return GOT_ACK;
            if (j < 0) return GONE;
        }
        resend_first = 1;
    }
    return GONE;
}

/* Send one packet (iovecs in `msg`) and wait for the ACK of `block`. */
static int send_and_wait(int s, struct msghdr *msg, unsigned block, int seconds, int retries) {
    unsigned char buf[16];
    if (sendmsg(s, msg, 0) < 0 && errno != EINTR && errno != ENOBUFS) return GONE;
    ssize_t n = recv(s, buf, sizeof buf, 0);  /* the hot path: one recv, one comparison */
    if (n >= 0) {
        int j = judge(buf, n, block);
        if (j == 1) return GOT_ACK;
        if (j < 0) return GONE;
        /* a stale ACK: wait on, without resending at once */
        return resend_until_acked(s, msg, block, seconds, retries, 0);
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)  /* SO_RCVTIMEO expired */
        return resend_until_acked(s, msg, block, seconds, retries, 1);
    return GONE;
}

static int run(int s, int fd, long long size, int blksize, int seconds, int retries,
               const char *first, Py_ssize_t first_len, char *chunk) {
    struct timeval tv = {.tv_sec = seconds, .tv_usec = 0};
    if (setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) return GONE;
    unsigned char header[4] = {0, OP_DATA, 0, 0};
    struct iovec iov[2];
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    if (first_len > 0) {
        iov[0].iov_base = (void *)first;
        iov[0].iov_len = (size_t)first_len;
        msg.msg_iovlen = 1;
        if (send_and_wait(s, &msg, 0, seconds, retries) != GOT_ACK) return GONE;
    }
    long long last = size / blksize + 1;  /* a short (possibly empty) block ends the file */
    long long per = CHUNK / blksize;
    if (per < 1) per = 1;
    iov[0].iov_base = header;
    iov[0].iov_len = 4;
    msg.msg_iovlen = 2;
    for (long long block = 1; block <= last;) {
        long long n = last - block + 1 < per ? last - block + 1 : per;
        off_t offset = (off_t)(block - 1) * blksize;
        size_t want = (size_t)(n * blksize);
        if ((long long)want > size - (long long)offset) want = (size_t)(size - (long long)offset);  /* the size told */
        size_t got = 0;
        while (got < want) {  /* pread may return less than asked */
            ssize_t r = pread(fd, chunk + got, want - got, offset + (off_t)got);
            if (r < 0) {
                if (errno == EINTR) continue;
                return GONE;
            }
            if (r == 0) break;
            got += (size_t)r;
        }
        if (got < want) {  /* the file shrank since its size was told: the client must not take it as whole */
            static const char changed[] = "\0\5\0\0file changed while it was sent";
            (void)send(s, changed, sizeof changed, 0);
            return GONE;
        }
        for (long long i = 0; i < n; i++, block++) {
            size_t start = (size_t)(i * blksize);
            size_t len = start >= got ? 0 : (got - start < (size_t)blksize ? got - start : (size_t)blksize);
            header[2] = (unsigned char)((block >> 8) & 0xFF);
            header[3] = (unsigned char)(block & 0xFF);
            iov[1].iov_base = chunk + start;
            iov[1].iov_len = len;
            if (send_and_wait(s, &msg, (unsigned)block, seconds, retries) != GOT_ACK) return GONE;
            if (len < (size_t)blksize) return GOT_ACK;  /* the short block at the size told ends the file */
        }
    }
    return GOT_ACK;
}

static PyObject *send_file(PyObject *self, PyObject *args) {
    int s, fd, blksize, seconds, retries;
    long long size;
    const char *first;
    Py_ssize_t first_len;
    (void)self;
    if (!PyArg_ParseTuple(args, "iiLiiiy#", &s, &fd, &size, &blksize, &seconds, &retries, &first, &first_len))
        return NULL;
    if (blksize < 8 || blksize > 65464 || size < 0 || seconds < 1 || retries < 1) {
        PyErr_SetString(PyExc_ValueError, "send_file: blksize 8..65464, size >= 0, seconds and retries >= 1");
        return NULL;
    }
    long long per = CHUNK / blksize;
    if (per < 1) per = 1;
    char *chunk = PyMem_RawMalloc((size_t)(per * blksize));
    if (chunk == NULL) return PyErr_NoMemory();
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = run(s, fd, size, blksize, seconds, retries, first, first_len, chunk);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(chunk);
    return PyBool_FromLong(rc == GOT_ACK);
}

static PyMethodDef methods[] = {
    {"send_file", send_file, METH_VARARGS,
     "send_file(sock_fd, file_fd, size, blksize, seconds, retries, first) -> bool: send the file in "
     "lockstep; True when the last block was acknowledged."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_sendloop", .m_doc = NULL, .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__sendloop(void) { return PyModule_Create(&module); }
