/* The body of a stored record (records.py, format "3"/"4"), in C, for the usual listing.
 *
 * The ingest encodes one record per list change; in Python that was a fifth of a worker's CPU
 * (~11 µs a change: the fixed-width packing, the GB18030 text and its deflate). This encodes
 * the same bytes for the listings that need none of the format's rare parts, and says None
 * for every other one, which records.py then encodes in Python:
 *
 * - no entry (a remove that never saw an upsert), identifier anomalies, an event time whose
 *   offset is neither +08:00 nor UTC (or naive), a list type or role outside the code tables,
 *   a subject role: what goes to the record's extras;
 * - a text holding a NUL, or one GB18030 does not carry losslessly.
 *
 * Text is encoded with Python's own gb18030 codec and deflated by the zlib Python's zlib
 * module uses, with the same parameters and dictionary (given by records.configure), so the
 * bytes are Python's to the letter: tests/index/test_records.py holds them equal over
 * generated entries. The code tables come from records.py too; the flag bits and widths
 * below are records.py's layout.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

/* records.py: flags, state and widths */
#define HAS_ENTRY 0x01
#define UNCODED 0x02
#define DEFLATED 0x04
#define MICROS 0x20
#define OFFSET_SHIFT 6
#define HAS_UNTIL 0x10
#define DISPUTED 0x20
#define CST_OFFSET 28800
#define MAX_PERSONS 255

static PyObject *list_type_codes, *polarity_codes, *kind_codes, *role_codes, *reason_codes;
static z_stream primed;
static int primed_ready = 0;

static PyObject *s_event_time, *s_identifier_anomalies, *s_entry, *s_removed, *s_reason,
    *s_source, *s_list_type, *s_polarity, *s_subject, *s_related_persons, *s_authority,
    *s_basis, *s_effective_from, *s_effective_until, *s_disputed, *s_kind, *s_name, *s_uscc,
    *s_id_number, *s_role, *s_utcoffset, *s_nul;

/* A byte buffer that grows. */
typedef struct {
    unsigned char *data;
    Py_ssize_t size, cap;
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t more) {
    if (b->size + more <= b->cap) return 0;
    Py_ssize_t cap = b->cap * 2;
    if (cap < b->size + more) cap = b->size + more;
    unsigned char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int buf_put(Buf *b, const void *src, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->size, src, n);
    b->size += n;
    return 0;
}

static int buf_byte(Buf *b, unsigned char c) { return buf_put(b, &c, 1); }

/* int.to_bytes(width, "big", signed=True) of a value known to fit. */
static int buf_be(Buf *b, int64_t value, int width) {
    unsigned char out[8];
    for (int i = 0; i < width; i++) out[i] = (unsigned char)((value >> (8 * (width - 1 - i))) & 0xFF);
    return buf_put(b, out, width);
}

static int buf_varint(Buf *b, uint64_t n) {
    while (n >= 0x80) {
        if (buf_byte(b, (unsigned char)((n & 0x7F) | 0x80)) < 0) return -1;
        n >>= 7;
    }
    return buf_byte(b, (unsigned char)n);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int64_t date_days(PyObject *day) {
    return days_from_civil(PyDateTime_GET_YEAR(day), PyDateTime_GET_MONTH(day),
                           PyDateTime_GET_DAY(day));
}

static signed char uscc_digit[256];

/* records.pack_code. Returns 1 when the party has no code, 0 when packed, -1 on error. */
static int pack_code(Buf *b, PyObject *code) {
    if (code == Py_None) return buf_byte(b, 0) < 0 ? -1 : 1;
    if (!PyUnicode_Check(code)) {
        PyErr_SetString(PyExc_TypeError, "a code is a str");
        return -1;
    }
    if (PyUnicode_GET_LENGTH(code) == 18 && PyUnicode_IS_ASCII(code)) {
        const unsigned char *s = PyUnicode_1BYTE_DATA(code);
        int digits = 1;
        for (int i = 0; i < 17; i++)
            if (s[i] < '0' || s[i] > '9') digits = 0;
        if (digits && ((s[17] >= '0' && s[17] <= '9') || s[17] == 'X')) {
            uint64_t number = 0;
            for (int i = 0; i < 17; i++) number = number * 10 + (s[i] - '0');
            number = number * 11 + (s[17] == 'X' ? 10 : s[17] - '0');
            if (buf_byte(b, 2) < 0) return -1;
            return buf_be(b, (int64_t)number, 8) < 0 ? -1 : 0;
        }
        unsigned __int128 number = 0;
        int uscc = 1;
        for (int i = 0; i < 18; i++) {
            int digit = uscc_digit[s[i]];
            if (digit < 0) {
                uscc = 0;
                break;
            }
            number = number * 31 + (unsigned)digit;
        }
        if (uscc) {
            unsigned char out[12];
            for (int i = 11; i >= 0; i--) {
                out[i] = (unsigned char)(number & 0xFF);
                number >>= 8;
            }
            if (buf_byte(b, 1) < 0) return -1;
            return buf_put(b, out, 12) < 0 ? -1 : 0;
        }
    }
    Py_ssize_t length;
    const char *text = PyUnicode_AsUTF8AndSize(code, &length);
    if (text == NULL) return -1;
    if (buf_byte(b, 3) < 0 || buf_varint(b, (uint64_t)length) < 0) return -1;
    return buf_put(b, text, length) < 0 ? -1 : 0;
}

/* The code of ``key`` in ``table``, or -1 when it has none (then the record needs extras). */
static long code_in(PyObject *table, PyObject *key) {
    PyObject *code = PyDict_GetItemWithError(table, key);
    if (code == NULL) return -1;
    return PyLong_AsLong(code);
}

/* Raw deflate against the dictionary, as records._deflate: a copy of the primed stream. */
static PyObject *deflated(PyObject *data) {
    z_stream stream;
    if (deflateCopy(&stream, &primed) != Z_OK) return PyErr_NoMemory();
    uLong bound = deflateBound(&stream, (uLong)PyBytes_GET_SIZE(data));
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)bound);
    if (out == NULL) {
        deflateEnd(&stream);
        return NULL;
    }
    stream.next_in = (Bytef *)PyBytes_AS_STRING(data);
    stream.avail_in = (uInt)PyBytes_GET_SIZE(data);
    stream.next_out = (Bytef *)PyBytes_AS_STRING(out);
    stream.avail_out = (uInt)bound;
    int status = deflate(&stream, Z_FINISH);
    Py_ssize_t produced = (Py_ssize_t)(bound - stream.avail_out);
    deflateEnd(&stream);
    if (status != Z_STREAM_END) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_RuntimeError, "deflate did not finish");
        return NULL;
    }
    if (_PyBytes_Resize(&out, produced) < 0) return NULL;
    return out;
}

/* The event time: flags bits and its 5 (+3) bytes; 1 when it needs the extras. */
static int put_event_time(Buf *b, PyObject *at, int *flags) {
    if (!PyDateTime_Check(at)) {
        PyErr_SetString(PyExc_TypeError, "event_time is a datetime");
        return -1;
    }
    PyObject *tz = PyDateTime_DATE_GET_TZINFO(at);
    if (tz == Py_None) return 1;
    PyObject *offset = PyObject_CallMethodNoArgs(at, s_utcoffset);
    if (offset == NULL) return -1;
    if (!PyDelta_Check(offset) || PyDateTime_DELTA_GET_MICROSECONDS(offset) != 0) {
        Py_DECREF(offset);
        return 1;
    }
    int64_t offset_s = (int64_t)PyDateTime_DELTA_GET_DAYS(offset) * 86400 +
                       PyDateTime_DELTA_GET_SECONDS(offset);
    Py_DECREF(offset);
    if (offset_s != CST_OFFSET && offset_s != 0) return 1;
    *flags |= (offset_s == 0 ? 1 : 0) << OFFSET_SHIFT;
    int64_t seconds = date_days(at) * 86400 + PyDateTime_DATE_GET_HOUR(at) * 3600 +
                      PyDateTime_DATE_GET_MINUTE(at) * 60 + PyDateTime_DATE_GET_SECOND(at) -
                      offset_s;
    if (buf_be(b, seconds, 5) < 0) return -1;
    int micro = PyDateTime_DATE_GET_MICROSECOND(at);
    if (micro) {
        *flags |= MICROS;
        if (buf_be(b, micro, 3) < 0) return -1;
    }
    return 0;
}

typedef struct {
    Buf *head;   /* kinds, persons, days, codes, roles */
    PyObject *texts;
    int flags, state;
} Entry;

#define GET(var, obj, name)                   \
    do {                                      \
        var = PyObject_GetAttr(obj, name);    \
        if (var == NULL) goto done;           \
    } while (0)

/* records._entry_part (and _persons_part): 0 done, 1 needs extras, -1 error. */
static int put_entry(PyObject *entry, Entry *out) {
    int result = -1;
    PyObject *list_type = NULL, *polarity = NULL, *subject = NULL, *listed = NULL, *persons = NULL,
             *kind = NULL, *role = NULL, *code = NULL, *name = NULL, *authority = NULL,
             *basis = NULL, *disputed = NULL, *from = NULL, *until = NULL;
    Buf codes = {NULL, 0, 0};
    unsigned char roles[MAX_PERSONS];

    GET(list_type, entry, s_list_type);
    long list_code = code_in(list_type_codes, list_type);
    if (list_code < 0) goto extras;
    GET(subject, entry, s_subject);
    GET(role, subject, s_role);
    if (role != Py_None) goto extras;
    GET(polarity, entry, s_polarity);
    GET(kind, subject, s_kind);
    long polarity_code = code_in(polarity_codes, polarity);
    if (polarity_code < 0) goto extras;
    long kind_code = code_in(kind_codes, kind);
    if (kind_code < 0) goto extras;
    int natural = PyUnicode_CompareWithASCIIString(kind, "natural_person") == 0;
    GET(code, subject, natural ? s_id_number : s_uscc);
    int uncoded = pack_code(&codes, code);
    if (uncoded < 0) goto done;
    GET(name, subject, s_name);
    GET(authority, entry, s_authority);
    GET(basis, entry, s_basis);
    if (PyList_Append(out->texts, name) < 0 || PyList_Append(out->texts, authority) < 0 ||
        PyList_Append(out->texts, basis) < 0)
        goto done;

    GET(listed, entry, s_related_persons);
    persons = PySequence_Tuple(listed); /* a snapshot: no borrowed item while Python runs */
    if (persons == NULL) goto done;
    Py_ssize_t count = PyTuple_GET_SIZE(persons);
    if (count > MAX_PERSONS) goto extras;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *person = PyTuple_GET_ITEM(persons, i);
        PyObject *number = PyObject_GetAttr(person, s_id_number);
        if (number == NULL) goto done;
        int none = pack_code(&codes, number);
        Py_DECREF(number);
        if (none < 0) goto done;
        uncoded |= none;
        PyObject *person_role = PyObject_GetAttr(person, s_role);
        if (person_role == NULL) goto done;
        long role_code = code_in(role_codes, person_role);
        Py_DECREF(person_role);
        if (role_code < 0) {
            if (PyErr_Occurred()) goto done;
            goto extras;
        }
        roles[i] = (unsigned char)role_code;
        PyObject *person_name = PyObject_GetAttr(person, s_name);
        if (person_name == NULL) goto done;
        int appended = PyList_Append(out->texts, person_name);
        Py_DECREF(person_name);
        if (appended < 0) goto done;
    }

    GET(disputed, entry, s_disputed);
    int is_disputed = PyObject_IsTrue(disputed);
    if (is_disputed < 0) goto done;
    if (is_disputed) out->state |= DISPUTED;
    GET(from, entry, s_effective_from);
    GET(until, entry, s_effective_until);
    if (!PyDate_Check(from) || (until != Py_None && !PyDate_Check(until))) goto extras;
    unsigned char head[2] = {(unsigned char)(list_code << 4 | polarity_code << 2 | kind_code),
                             (unsigned char)count};
    if (buf_put(out->head, head, 2) < 0 || buf_be(out->head, date_days(from), 3) < 0) goto done;
    if (until != Py_None) {
        out->state |= HAS_UNTIL;
        if (buf_be(out->head, date_days(until), 3) < 0) goto done;
    }
    if (buf_put(out->head, codes.data, codes.size) < 0 || buf_put(out->head, roles, count) < 0)
        goto done;
    if (uncoded) out->flags |= UNCODED;
    result = 0;
    goto done;
extras:
    result = PyErr_Occurred() ? -1 : 1;
done:
    PyMem_Free(codes.data);
    Py_XDECREF(list_type);
    Py_XDECREF(polarity);
    Py_XDECREF(subject);
    Py_XDECREF(listed);
    Py_XDECREF(persons);
    Py_XDECREF(kind);
    Py_XDECREF(role);
    Py_XDECREF(code);
    Py_XDECREF(name);
    Py_XDECREF(authority);
    Py_XDECREF(basis);
    Py_XDECREF(disputed);
    Py_XDECREF(from);
    Py_XDECREF(until);
    return result;
}

/* records._encode_text for GB18030 text: the bytes (deflated when shorter), or None. */
static PyObject *encoded_text(PyObject *texts, int *flags) {
    PyObject *joined = PyUnicode_Join(s_nul, texts);
    if (joined == NULL) return NULL;
    Py_ssize_t nuls = PyUnicode_Count(joined, s_nul, 0, PY_SSIZE_T_MAX);
    if (nuls < 0 || nuls >= PyList_GET_SIZE(texts)) { /* a text holds a NUL: JSON texts */
        Py_DECREF(joined);
        return nuls < 0 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *data = PyUnicode_AsEncodedString(joined, "gb18030", "strict");
    if (data == NULL) {
        Py_DECREF(joined);
        if (!PyErr_ExceptionMatches(PyExc_UnicodeError)) return NULL;
        PyErr_Clear();
        return Py_NewRef(Py_None);
    }
    PyObject *back = PyUnicode_Decode(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), "gb18030",
                                      "strict");
    int same = back != NULL ? PyUnicode_Compare(back, joined) == 0 : 0;
    Py_XDECREF(back);
    Py_DECREF(joined);
    if (!same) { /* not lossless: UTF-8, in Python */
        Py_DECREF(data);
        if (PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeError)) return NULL;
            PyErr_Clear();
        }
        return Py_NewRef(Py_None);
    }
    PyObject *packed = deflated(data);
    if (packed == NULL) {
        Py_DECREF(data);
        return NULL;
    }
    if (PyBytes_GET_SIZE(packed) < PyBytes_GET_SIZE(data)) {
        *flags |= DEFLATED;
        Py_DECREF(data);
        return packed;
    }
    Py_DECREF(packed);
    return data;
}

static PyObject *record_body(PyObject *module, PyObject *stored) {
    if (!primed_ready) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    PyObject *result = NULL, *anomalies = NULL, *at = NULL, *removed = NULL, *reason = NULL,
             *source = NULL, *entry = NULL, *texts = NULL, *text = NULL;
    Buf head = {NULL, 0, 0};
    Entry part = {&head, NULL, 0, 0};
    int flags = 0, needs = 0;
    long reason_code;

    GET(anomalies, stored, s_identifier_anomalies);
    if (!PyList_Check(anomalies) || PyList_GET_SIZE(anomalies) != 0) goto python;
    GET(entry, stored, s_entry);
    if (entry == Py_None) goto python;
    GET(removed, stored, s_removed);
    GET(reason, stored, s_reason);
    reason_code = code_in(reason_codes, reason);
    if (reason_code < 0) goto python;
    int is_removed = PyObject_IsTrue(removed);
    if (is_removed < 0) goto done;
    part.state = (int)(2 * reason_code + is_removed);
    if (buf_reserve(&head, 96) < 0) goto done;
    head.size = 2; /* flags and state, known at the end */
    GET(at, stored, s_event_time);
    needs = put_event_time(&head, at, &flags);
    if (needs != 0) goto fallback;
    GET(source, stored, s_source);
    texts = PyList_New(0);
    if (texts == NULL || PyList_Append(texts, source) < 0) goto done;
    part.texts = texts;
    part.flags = flags | HAS_ENTRY;
    needs = put_entry(entry, &part);
    if (needs != 0) goto fallback;
    flags = part.flags;
    text = encoded_text(texts, &flags);
    if (text == NULL) goto done;
    if (text == Py_None) goto python;
    head.data[0] = (unsigned char)flags;
    head.data[1] = (unsigned char)part.state;
    result = PyBytes_FromStringAndSize(NULL, head.size + PyBytes_GET_SIZE(text));
    if (result != NULL) {
        memcpy(PyBytes_AS_STRING(result), head.data, head.size);
        memcpy(PyBytes_AS_STRING(result) + head.size, PyBytes_AS_STRING(text),
               PyBytes_GET_SIZE(text));
    }
    goto done;
fallback:
    if (needs < 0) goto done;
python:
    if (!PyErr_Occurred()) result = Py_NewRef(Py_None);
done:
    PyMem_Free(head.data);
    Py_XDECREF(anomalies);
    Py_XDECREF(at);
    Py_XDECREF(removed);
    Py_XDECREF(reason);
    Py_XDECREF(source);
    Py_XDECREF(entry);
    Py_XDECREF(texts);
    Py_XDECREF(text);
    return result;
}


/* ---- refs: layout.flat_refs of a new record's keys ---------------------------------------- */

/* BLAKE2b (RFC 7693) with a 6-byte digest, no key: layout.ref_field's digest of a long key. */
static const uint64_t B2_IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};
static const uint8_t B2_SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

#define ROTR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
#define B2_G(r, i, a, b, c, d)                      \
    do {                                            \
        a = a + b + m[B2_SIGMA[r][2 * (i)]];        \
        d = ROTR64(d ^ a, 32);                      \
        c = c + d;                                  \
        b = ROTR64(b ^ c, 24);                      \
        a = a + b + m[B2_SIGMA[r][2 * (i) + 1]];    \
        d = ROTR64(d ^ a, 16);                      \
        c = c + d;                                  \
        b = ROTR64(b ^ c, 63);                      \
    } while (0)

static void b2_compress(uint64_t h[8], const unsigned char block[128], uint64_t counter, int last) {
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; i++) {
        uint64_t word = 0;
        for (int j = 7; j >= 0; j--) word = word << 8 | block[8 * i + j];
        m[i] = word;
    }
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = B2_IV[i];
    }
    v[12] ^= counter;
    if (last) v[14] = ~v[14];
    for (int r = 0; r < 12; r++) {
        B2_G(r, 0, v[0], v[4], v[8], v[12]);
        B2_G(r, 1, v[1], v[5], v[9], v[13]);
        B2_G(r, 2, v[2], v[6], v[10], v[14]);
        B2_G(r, 3, v[3], v[7], v[11], v[15]);
        B2_G(r, 4, v[0], v[5], v[10], v[15]);
        B2_G(r, 5, v[1], v[6], v[11], v[12]);
        B2_G(r, 6, v[2], v[7], v[8], v[13]);
        B2_G(r, 7, v[3], v[4], v[9], v[14]);
    }
    for (int i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

static void blake2b_6(const unsigned char *in, size_t length, unsigned char out[6]) {
    uint64_t h[8];
    unsigned char block[128];
    size_t done = 0;
    memcpy(h, B2_IV, sizeof h);
    h[0] ^= 0x01010000ULL ^ 6;
    while (length - done > 128) {
        b2_compress(h, in + done, done + 128, 0);
        done += 128;
    }
    memset(block, 0, sizeof block);
    memcpy(block, in + done, length - done);
    b2_compress(h, block, length, 1);
    for (int i = 0; i < 6; i++) out[i] = (unsigned char)(h[0] >> (8 * i));
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
#define SHORT_FIELD 8 /* layout._SHORT_FIELD */

static PyObject *s_kind_i, *s_kind_n, *s_kind_m, *s_subject_role;

typedef struct {
    PyObject *kind, *key, *role; /* borrowed from the entry, or owned keys (folded names) */
} Key;

#define MAX_KEYS (3 * (MAX_PERSONS + 1))

/* Appends (kind, bucket, field, role code): layout.flat_refs for one key. */
static int put_ref(PyObject *list, const Key *k, long buckets, PyObject *role_codes) {
    Py_ssize_t length;
    const char *raw = PyUnicode_AsUTF8AndSize(k->key, &length);
    if (raw == NULL) return -1;
    PyObject *code = PyDict_GetItemWithError(role_codes, k->role);
    if (code == NULL) {
        if (PyErr_Occurred()) return -1;
        code = k->role;
    }
    unsigned long crc = crc32(0L, (const Bytef *)raw, (uInt)length);
    PyObject *bucket = PyLong_FromUnsignedLong(crc % (unsigned long)buckets);
    if (bucket == NULL) return -1;
    PyObject *field;
    if (length <= SHORT_FIELD) {
        field = Py_NewRef(k->key);
    } else {
        unsigned char digest[6];
        char text[8];
        blake2b_6((const unsigned char *)raw, (size_t)length, digest);
        for (int i = 0; i < 2; i++) {
            uint32_t bits = (uint32_t)digest[3 * i] << 16 | (uint32_t)digest[3 * i + 1] << 8 |
                            digest[3 * i + 2];
            for (int j = 0; j < 4; j++) text[4 * i + j] = B64[(bits >> (18 - 6 * j)) & 0x3F];
        }
        field = PyUnicode_FromStringAndSize(text, 8);
        if (field == NULL) {
            Py_DECREF(bucket);
            return -1;
        }
    }
    int failed = PyList_Append(list, k->kind) < 0 || PyList_Append(list, bucket) < 0 ||
                 PyList_Append(list, field) < 0 || PyList_Append(list, code) < 0;
    Py_DECREF(bucket);
    Py_DECREF(field);
    return failed ? -1 : 0;
}

/* A name folded: from the batch's folds, else by ``fold_missing`` (normalise_name). New ref. */
static PyObject *folded_name(PyObject *name, PyObject *folds, PyObject *fold_missing) {
    PyObject *folded = PyDict_GetItemWithError(folds, name);
    if (folded != NULL) return Py_NewRef(folded);
    if (PyErr_Occurred()) return NULL;
    return PyObject_CallOneArg(fold_missing, name);
}

static int key_seen(const Key *keys, int count, const Key *k) {
    for (int i = 0; i < count; i++) {
        if (keys[i].kind != k->kind) continue;
        int same_key = PyUnicode_Compare(keys[i].key, k->key);
        if (same_key == -1 && PyErr_Occurred()) return -1;
        if (same_key != 0) continue;
        int same_role = PyUnicode_Compare(keys[i].role, k->role);
        if (same_role == -1 && PyErr_Occurred()) return -1;
        if (same_role == 0) return 1;
    }
    return 0;
}

/* new_refs(stored, folds, fold_missing, buckets, role_codes): the flat refs a record of
 * ``stored`` needs where none was (StoredEntry.index_keys and codeless_name_keys, placed as
 * layout.flat_refs places them): identifiers (i), folded names (n), and the folded names of
 * parties without a code (m), each (key, role) once per kind. */
static PyObject *new_refs(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *stored, *folds, *fold_missing, *role_codes;
    long buckets;
    if (!PyArg_ParseTuple(args, "OO!OlO!", &stored, &PyDict_Type, &folds, &fold_missing,
                          &buckets, &PyDict_Type, &role_codes))
        return NULL;
    if (buckets <= 0) {
        PyErr_SetString(PyExc_ValueError, "buckets must be positive");
        return NULL;
    }
    PyObject *list = NULL, *entry = NULL, *subject = NULL, *listed = NULL, *persons = NULL,
             *owned = NULL;
    Key *keys = NULL;
    int count = 0;

    GET(entry, stored, s_entry);
    if (entry == Py_None) {
        list = PyList_New(0);
        goto done;
    }
    GET(subject, entry, s_subject);
    GET(listed, entry, s_related_persons);
    persons = PySequence_Tuple(listed); /* a snapshot: no borrowed item while Python runs */
    if (persons == NULL) goto done;
    Py_ssize_t n_persons = PyTuple_GET_SIZE(persons);
    if (n_persons > MAX_PERSONS) { /* more than a listing holds: the Python path */
        list = Py_NewRef(Py_None);
        goto done;
    }
    owned = PyList_New(0); /* what the keys point to, alive until the refs are made */
    keys = PyMem_Malloc(sizeof(Key) * MAX_KEYS);
    if (owned == NULL || keys == NULL) {
        if (keys == NULL) PyErr_NoMemory();
        goto done;
    }
    /* the subject (role "subject", code its uscc or else its id_number), then each person */
    for (Py_ssize_t p = -1; p < n_persons; p++) {
        PyObject *party = p < 0 ? subject : PyTuple_GET_ITEM(persons, p);
        PyObject *code, *role, *folded;
        if (p < 0) {
            code = PyObject_GetAttr(party, s_uscc);
            if (code == NULL) goto done;
            int truthy = PyObject_IsTrue(code);
            if (truthy < 0 || PyList_Append(owned, code) < 0) {
                Py_DECREF(code);
                goto done;
            }
            Py_DECREF(code);
            if (!truthy) {
                code = PyObject_GetAttr(party, s_id_number);
                if (code == NULL) goto done;
                int appended = PyList_Append(owned, code);
                Py_DECREF(code);
                if (appended < 0) goto done;
            }
            if (PyList_Append(owned, s_subject_role) < 0) goto done;
        } else {
            code = PyObject_GetAttr(party, s_id_number);
            if (code == NULL) goto done;
            int appended = PyList_Append(owned, code);
            Py_DECREF(code);
            if (appended < 0) goto done;
            role = PyObject_GetAttr(party, s_role);
            if (role == NULL) goto done;
            appended = PyList_Append(owned, role);
            Py_DECREF(role);
            if (appended < 0) goto done;
        }
        PyObject *name = PyObject_GetAttr(party, s_name);
        if (name == NULL) goto done;
        folded = folded_name(name, folds, fold_missing);
        Py_DECREF(name);
        if (folded == NULL) goto done;
        int appended = PyList_Append(owned, folded);
        Py_DECREF(folded);
        if (appended < 0) goto done;
        Py_ssize_t at = PyList_GET_SIZE(owned) - 3; /* code, role, folded: alive in owned */
        code = PyList_GET_ITEM(owned, at);
        role = PyList_GET_ITEM(owned, at + 1);
        folded = PyList_GET_ITEM(owned, at + 2);
        int coded = PyObject_IsTrue(code);
        if (coded < 0) goto done;
        Key candidates[3] = {
            {s_kind_i, code, role}, {s_kind_n, folded, role}, {s_kind_m, folded, role}};
        for (int c = 0; c < 3; c++) {
            if ((c == 0 && !coded) || (c == 2 && coded)) continue;
            int seen = key_seen(keys, count, &candidates[c]);
            if (seen < 0) goto done;
            if (!seen) keys[count++] = candidates[c];
        }
    }
    /* i, then n, then m: layout.flat_refs's order of kinds */
    list = PyList_New(0);
    if (list == NULL) goto done;
    PyObject *order[3] = {s_kind_i, s_kind_n, s_kind_m};
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < count; i++)
            if (keys[i].kind == order[o] && put_ref(list, &keys[i], buckets, role_codes) < 0) {
                Py_CLEAR(list);
                goto done;
            }
done:
    PyMem_Free(keys);
    Py_XDECREF(entry);
    Py_XDECREF(subject);
    Py_XDECREF(listed);
    Py_XDECREF(persons);
    Py_XDECREF(owned);
    return list;
}

static PyObject *linked_zlib(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return PyUnicode_FromString(zlibVersion());
}

static PyObject *configure(PyObject *module, PyObject *args) {
    PyObject *tables[5];
    const char *dictionary;
    Py_ssize_t dictionary_size;
    int level, window_bits, mem_level;
    const char *alphabet;
    Py_ssize_t alphabet_size;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!y#iiis#", &PyDict_Type, &tables[0], &PyDict_Type,
                          &tables[1], &PyDict_Type, &tables[2], &PyDict_Type, &tables[3],
                          &PyDict_Type, &tables[4], &dictionary, &dictionary_size, &level,
                          &window_bits, &mem_level, &alphabet, &alphabet_size))
        return NULL;
    PyObject **slots[5] = {&list_type_codes, &polarity_codes, &kind_codes, &role_codes,
                           &reason_codes};
    for (int i = 0; i < 5; i++) Py_XSETREF(*slots[i], Py_NewRef(tables[i]));
    memset(uscc_digit, -1, sizeof uscc_digit);
    for (Py_ssize_t i = 0; i < alphabet_size; i++) uscc_digit[(unsigned char)alphabet[i]] = (signed char)i;
    if (primed_ready) deflateEnd(&primed);
    primed_ready = 0;
    memset(&primed, 0, sizeof primed);
    if (deflateInit2(&primed, level, Z_DEFLATED, window_bits, mem_level, Z_DEFAULT_STRATEGY) != Z_OK) {
        PyErr_SetString(PyExc_ValueError, "zlib refused the compressor's parameters");
        return NULL;
    }
    if (deflateSetDictionary(&primed, (const Bytef *)dictionary, (uInt)dictionary_size) != Z_OK) {
        deflateEnd(&primed);
        PyErr_SetString(PyExc_ValueError, "zlib refused the dictionary");
        return NULL;
    }
    primed_ready = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(list_types, polarities, kinds, roles, reasons, dictionary, level, window_bits, "
     "mem_level, uscc_alphabet): records.py's code tables and text compressor."},
    {"record_body", record_body, METH_O,
     "record_body(stored) -> bytes | None: records._record_body's bytes, or None where the "
     "record needs what only the Python encoder writes."},
    {"linked_zlib", linked_zlib, METH_NOARGS,
     "The version of the zlib this module deflates with (zlibVersion())."},
    {"new_refs", new_refs, METH_VARARGS,
     "new_refs(stored, folds, fold_missing, buckets, role_codes) -> list: layout.flat_refs of "
     "the keys a record of ``stored`` needs where there was none; None for the Python path."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_recordc", NULL, -1, methods};

PyMODINIT_FUNC PyInit__recordc(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return NULL;
#define INTERN(var, text)                                  \
    if ((var = PyUnicode_InternFromString(text)) == NULL) \
        return NULL;
    INTERN(s_event_time, "event_time");
    INTERN(s_identifier_anomalies, "identifier_anomalies");
    INTERN(s_entry, "entry");
    INTERN(s_removed, "removed");
    INTERN(s_reason, "reason");
    INTERN(s_source, "source");
    INTERN(s_list_type, "list_type");
    INTERN(s_polarity, "polarity");
    INTERN(s_subject, "subject");
    INTERN(s_related_persons, "related_persons");
    INTERN(s_authority, "authority");
    INTERN(s_basis, "basis");
    INTERN(s_effective_from, "effective_from");
    INTERN(s_effective_until, "effective_until");
    INTERN(s_disputed, "disputed");
    INTERN(s_kind, "kind");
    INTERN(s_name, "name");
    INTERN(s_uscc, "uscc");
    INTERN(s_id_number, "id_number");
    INTERN(s_role, "role");
    INTERN(s_utcoffset, "utcoffset");
    if ((s_nul = PyUnicode_FromStringAndSize("\0", 1)) == NULL) return NULL;
    INTERN(s_kind_i, "i");
    INTERN(s_kind_n, "n");
    INTERN(s_kind_m, "m");
    INTERN(s_subject_role, "subject");
    return PyModule_Create(&module);
}
