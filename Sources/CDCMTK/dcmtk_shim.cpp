// dcmtk_shim.cpp — implementation of dcmtk_shim.h over DCMTK 3.6.7 and OpenJPEG 2.5.
// The only C++ of the project. Conditions become dcmtk_status codes here and nowhere else.

#include "dcmtk_shim.h"

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dctk.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmdata/dcrleerg.h"
#include "dcmtk/dcmdata/dcpixseq.h"
#include "dcmtk/dcmdata/dcpxitem.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpeg/djencode.h"
#include "dcmtk/dcmjpeg/djcparam.h"
#include "dcmtk/dcmjpeg/djeijg8.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "dcmtk/dcmjpls/djencode.h"
#include "dcmtk/oflog/oflog.h"

#include <openjpeg-2.5/openjpeg.h>

#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

struct dcmtk_file {
    DcmFileFormat format;
    int max_nesting_found = 0;
    bool has_meta = false;
    E_TransferSyntax xfer = EXS_Unknown;
    std::string xfer_uid;
};

namespace {
bool is_jpeg2000_family(const std::string &uid);
}

static inline DcmItem *as_item(dcmtk_item *item) { return reinterpret_cast<DcmItem *>(item); }
static inline dcmtk_item *as_handle(DcmItem *item) { return reinterpret_cast<dcmtk_item *>(item); }

// ---- initialisation ----------------------------------------------------------------------

static std::once_flag initialize_once;

extern "C" void dcmtk_initialize(void) {
    std::call_once(initialize_once, [] {
        // DCMTK's log lines can quote element values: none of them may reach our logs.
        OFLog::configure(OFLogger::OFF_LOG_LEVEL);
        // A known attribute written with VR UN (e.g. by a relay that lost the dictionary) is read
        // with its dictionary VR, so its value means what the standard says.
        dcmEnableUnknownVRConversion.set(OFTrue);
        // Colour stays as stored (YCbCr is not turned into RGB): colour models are normalisation's job.
        DJDecoderRegistration::registerCodecs(EDC_never);
        DJEncoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
        DJLSEncoderRegistration::registerCodecs();
        DcmRLEDecoderRegistration::registerCodecs();
        DcmRLEEncoderRegistration::registerCodecs();
    });
}

// ---- pre-parse scan: sequence nesting depth ------------------------------------------------
// DCMTK's reader recurses once per sequence level; a file nested some 100,000 levels deep
// overflows the stack. This scan walks the element headers without recursion and reports the
// deepest nesting, so such files are refused before DCMTK sees them.

namespace {

struct Scanner {
    const uint8_t *p;
    size_t n;

    uint16_t u16(size_t at, bool big) const {
        return big ? uint16_t(p[at] << 8 | p[at + 1]) : uint16_t(p[at] | p[at + 1] << 8);
    }
    uint32_t u32(size_t at, bool big) const {
        return big ? (uint32_t(p[at]) << 24 | uint32_t(p[at + 1]) << 16 | uint32_t(p[at + 2]) << 8 | p[at + 3])
                   : (uint32_t(p[at]) | uint32_t(p[at + 1]) << 8 | uint32_t(p[at + 2]) << 16 | uint32_t(p[at + 3]) << 24);
    }
    bool is_vr(size_t at) const {
        return at + 2 <= n && p[at] >= 'A' && p[at] <= 'Z' && p[at + 1] >= 'A' && p[at + 1] <= 'Z';
    }
    static bool long_vr(const uint8_t *v) {
        static const char *const longs[] = {"OB", "OW", "OF", "SQ", "UT", "UN", "OD", "OL", "OV", "UC", "UR", "SV", "UV"};
        for (const char *l : longs)
            if (v[0] == l[0] && v[1] == l[1]) return true;
        return false;
    }

    struct Level {
        size_t end;         // SIZE_MAX: undefined length
        bool is_sequence;   // a sequence (items inside) or an item (elements inside)
        bool pixel_items;   // encapsulated pixel data: items are opaque fragments
        bool implicit;
        bool big;
    };

    // Returns the deepest sequence nesting seen, stopping early once it passes limit.
    int max_depth(size_t start, bool implicit, bool big, int limit) const {
        std::vector<Level> stack;
        int depth = 0, deepest = 0;
        size_t pos = start;
        while (pos + 8 <= n) {
            while (!stack.empty() && stack.back().end != SIZE_MAX && pos >= stack.back().end) {
                if (stack.back().is_sequence) depth--;
                stack.pop_back();
            }
            bool imp = stack.empty() ? implicit : stack.back().implicit;
            bool be = stack.empty() ? big : stack.back().big;
            uint16_t group = u16(pos, be);
            uint16_t element = u16(pos + 2, be);
            if (group == 0xFFFE) {
                uint32_t len = u32(pos + 4, be);
                pos += 8;
                if (element == 0xE000) {  // item
                    bool in_pixels = !stack.empty() && stack.back().pixel_items;
                    if (in_pixels) {
                        if (len == 0xFFFFFFFF || len > n - pos) return deepest;
                        pos += len;
                    } else {
                        stack.push_back({len == 0xFFFFFFFF ? SIZE_MAX : pos + len, false, false, imp, be});
                    }
                } else if (element == 0xE00D) {  // item delimiter
                    if (!stack.empty() && !stack.back().is_sequence) stack.pop_back();
                } else if (element == 0xE0DD) {  // sequence delimiter
                    if (!stack.empty() && !stack.back().is_sequence) stack.pop_back();
                    if (!stack.empty() && stack.back().is_sequence) {
                        stack.pop_back();
                        depth--;
                    }
                } else {
                    return deepest;
                }
                continue;
            }
            uint32_t len;
            size_t header;
            bool sequence = false, pixels = false, contents_implicit = imp;
            if (!imp && is_vr(pos + 4) && (group != 0 || true)) {
                const uint8_t *vr = p + pos + 4;
                if (long_vr(vr)) {
                    if (pos + 12 > n) return deepest;
                    len = u32(pos + 8, be);
                    header = 12;
                } else {
                    len = u16(pos + 6, be);
                    header = 8;
                }
                if (vr[0] == 'S' && vr[1] == 'Q') sequence = true;
                if (vr[0] == 'U' && vr[1] == 'N' && len == 0xFFFFFFFF) {
                    sequence = true;  // UN of undefined length: an implicit little endian sequence
                    contents_implicit = true;
                }
                if (group == 0x7FE0 && len == 0xFFFFFFFF) pixels = true;
            } else {
                len = u32(pos + 4, be);
                header = 8;
                if (len == 0xFFFFFFFF) {
                    sequence = true;
                    if (group == 0x7FE0) pixels = true;
                } else if (len >= 8 && pos + 12 <= n && u16(pos + 8, be) == 0xFFFE && u16(pos + 10, be) == 0xE000) {
                    sequence = true;  // implicit VR: a value that starts with an item tag is a sequence
                }
            }
            pos += header;
            if (sequence || pixels) {
                if (len != 0xFFFFFFFF && len > n - pos) return deepest;
                stack.push_back({len == 0xFFFFFFFF ? SIZE_MAX : pos + len, true, pixels, contents_implicit, be && !contents_implicit});
                if (!pixels) {
                    depth++;
                    if (depth > deepest) deepest = depth;
                    if (deepest > limit) return deepest;
                }
                continue;
            }
            if (len == 0xFFFFFFFF || len > n - pos) return deepest;  // malformed: leave it to DCMTK
            pos += len;
        }
        return deepest;
    }
};

// The first tag of a dataset without file meta must look like one: an even group in the
// command/meta/identifying range, in either byte order. Everything else is "not DICOM".
bool plausible_raw_dataset(const uint8_t *p, size_t n, bool *implicit, bool *big) {
    if (n < 8) return false;
    uint16_t g_le = uint16_t(p[0] | p[1] << 8), g_be = uint16_t(p[0] << 8 | p[1]);
    uint16_t e_le = uint16_t(p[2] | p[3] << 8);
    bool vr = p[4] >= 'A' && p[4] <= 'Z' && p[5] >= 'A' && p[5] <= 'Z';
    auto plausible_group = [](uint16_t g) { return g == 0x0002 || g == 0x0004 || g == 0x0008; };
    if (plausible_group(g_le) && e_le < 0x2000) {
        *big = false;
        *implicit = !vr;
        return true;
    }
    if (plausible_group(g_be) && vr) {
        *big = true;
        *implicit = false;
        return true;
    }
    return false;
}

struct MappedFile {
    const uint8_t *data = nullptr;
    size_t length = 0;
    bool mapped = false;
    ~MappedFile() {
        if (mapped && data) munmap(const_cast<uint8_t *>(data), length);
    }
};

dcmtk_status map_file(const char *path, MappedFile &out) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return DCMTK_IO_ERROR;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return DCMTK_IO_ERROR;
    }
    out.length = size_t(st.st_size);
    if (out.length > 0) {
        void *m = mmap(nullptr, out.length, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            return DCMTK_IO_ERROR;
        }
        out.data = static_cast<const uint8_t *>(m);
        out.mapped = true;
    }
    close(fd);
    return DCMTK_OK;
}

bool is_big_endian_uid(const char *uid) { return strcmp(uid, "1.2.840.10008.1.2.2") == 0; }
bool is_implicit_uid(const char *uid) { return strcmp(uid, "1.2.840.10008.1.2") == 0; }
bool is_deflated_uid(const char *uid) { return strcmp(uid, "1.2.840.10008.1.2.1.99") == 0; }

// Scans the bytes, deciding first whether they are DICOM at all. Sets *nesting.
dcmtk_status prescan(const uint8_t *p, size_t n, int limit, int *nesting, bool *has_meta, std::string *meta_uid, bool *meta_implicit) {
    Scanner s{p, n};
    *nesting = 0;
    const bool preamble = n >= 132 && memcmp(p + 128, "DICM", 4) == 0;
    // A meta group without the preamble (some writers omit it) counts as file meta too.
    *has_meta = preamble || (n >= 8 && p[0] == 0x02 && p[1] == 0x00 && s.is_vr(4));
    if (*has_meta) {
        // Meta group: explicit VR little endian, read to learn the dataset's transfer syntax.
        size_t pos = preamble ? 132 : 0;
        std::string uid;
        while (pos + 8 <= n && s.u16(pos, false) == 0x0002) {
            uint16_t element = s.u16(pos + 2, false);
            uint32_t len;
            size_t header;
            if (!s.is_vr(pos + 4)) return DCMTK_PARSE_ERROR;
            if (Scanner::long_vr(p + pos + 4)) {
                if (pos + 12 > n) return DCMTK_TRUNCATED;
                len = s.u32(pos + 8, false);
                header = 12;
            } else {
                len = s.u16(pos + 6, false);
                header = 8;
            }
            if (len == 0xFFFFFFFF || len > n - pos - header) return DCMTK_TRUNCATED;
            if (element == 0x0010) {
                uid.assign(reinterpret_cast<const char *>(p + pos + header), len);
                while (!uid.empty() && (uid.back() == '\0' || uid.back() == ' ')) uid.pop_back();
            }
            pos += header + len;
        }
        *meta_uid = uid;
        if (is_deflated_uid(uid.c_str())) return DCMTK_OK;  // DCMTK inflates; its contents are not scanned
        bool implicit = is_implicit_uid(uid.c_str());
        bool big = is_big_endian_uid(uid.c_str());
        if (uid.empty() && pos + 6 <= n) implicit = !s.is_vr(pos + 4);
        *meta_implicit = implicit;
        *nesting = s.max_depth(pos, implicit, big, limit);
        return DCMTK_OK;
    }
    bool implicit = false, big = false;
    if (!plausible_raw_dataset(p, n, &implicit, &big)) return DCMTK_NOT_DICOM;
    *nesting = s.max_depth(0, implicit, big, limit);
    return DCMTK_OK;
}

dcmtk_status status_for_condition(const OFCondition &c) {
    if (c.good()) return DCMTK_OK;
    if (c == EC_StreamNotifyClient || c == EC_InvalidStream || c == EC_EndOfStream) return DCMTK_TRUNCATED;
    if (c == EC_UnsupportedEncoding) return DCMTK_UNSUPPORTED_SYNTAX;
    return DCMTK_PARSE_ERROR;
}

void set_condition(uint32_t condition[2], const OFCondition &c) {
    if (condition) {
        condition[0] = c.module();
        condition[1] = c.code();
    }
}

}  // namespace

// ---- opening -----------------------------------------------------------------------------

extern "C" dcmtk_file *dcmtk_open_file(const char *path, int max_nesting, dcmtk_status *status, uint32_t condition[2]) {
    dcmtk_initialize();
    if (condition) condition[0] = condition[1] = 0;
    if (!path || !status) {
        if (status) *status = DCMTK_INVALID_ARGUMENT;
        return nullptr;
    }
    MappedFile mapped;
    dcmtk_status st = map_file(path, mapped);
    if (st != DCMTK_OK) {
        *status = st;
        return nullptr;
    }
    int nesting = 0;
    bool has_meta = false, meta_implicit = false;
    std::string meta_uid;
    st = prescan(mapped.data, mapped.length, max_nesting, &nesting, &has_meta, &meta_uid, &meta_implicit);
    if (st != DCMTK_OK) {
        *status = st;
        return nullptr;
    }
    if (nesting > max_nesting) {
        *status = DCMTK_NESTING_TOO_DEEP;
        return nullptr;
    }
    // The syntax to read the dataset in when the meta header cannot tell DCMTK: none given, or one
    // DCMTK 3.6.7 does not know (HTJ2K, deflated image frames: both explicit VR little endian).
    E_TransferSyntax read_xfer = EXS_Unknown;
    if (has_meta && meta_uid.empty()) {
        read_xfer = meta_implicit ? EXS_LittleEndianImplicit : EXS_LittleEndianExplicit;
    } else if (has_meta && DcmXfer(meta_uid.c_str()).getXfer() == EXS_Unknown) {
        if (!is_jpeg2000_family(meta_uid) && meta_uid != "1.2.840.10008.1.2.8.1") {
            *status = DCMTK_UNSUPPORTED_SYNTAX;
            return nullptr;
        }
        read_xfer = EXS_LittleEndianExplicit;
    }
    dcmtk_file *file = new dcmtk_file();
    file->max_nesting_found = nesting;
    file->has_meta = has_meta;
    OFCondition c = file->format.loadFile(OFFilename(path), read_xfer, EGL_noChange, 0xFFFFFFFEu,
                                          has_meta ? ERM_autoDetect : ERM_dataset);
    if (c.good()) c = file->format.loadAllDataIntoMemory();
    if (c.bad()) {
        set_condition(condition, c);
        *status = status_for_condition(c);
        delete file;
        return nullptr;
    }
    DcmDataset *ds = file->format.getDataset();
    if (ds->card() == 0) {
        *status = DCMTK_NOT_DICOM;
        delete file;
        return nullptr;
    }
    file->xfer = ds->getOriginalXfer();
    if (!meta_uid.empty()) {
        file->xfer_uid = meta_uid;
    } else {
        file->xfer_uid = DcmXfer(file->xfer).getXferID();
    }
    *status = DCMTK_OK;
    return file;
}

extern "C" dcmtk_file *dcmtk_open_memory(const uint8_t *bytes, size_t length, int max_nesting, dcmtk_status *status, uint32_t condition[2]) {
    // DCMTK reads files most reliably; a private temporary file keeps one code path.
    const char *tmpdir = getenv("TMPDIR");
    std::string templ = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/dicom-etl-XXXXXX";
    std::vector<char> name(templ.begin(), templ.end());
    name.push_back('\0');
    int fd = mkstemp(name.data());
    if (fd < 0) {
        if (status) *status = DCMTK_IO_ERROR;
        return nullptr;
    }
    size_t written = 0;
    while (written < length) {
        ssize_t w = write(fd, bytes + written, length - written);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        written += size_t(w);
    }
    close(fd);
    dcmtk_file *file = nullptr;
    if (written == length) {
        file = dcmtk_open_file(name.data(), max_nesting, status, condition);
    } else if (status) {
        *status = DCMTK_IO_ERROR;
    }
    unlink(name.data());
    return file;
}

extern "C" void dcmtk_close(dcmtk_file *file) { delete file; }
extern "C" int dcmtk_file_max_nesting(const dcmtk_file *file) { return file ? file->max_nesting_found : 0; }
extern "C" int dcmtk_file_has_meta(const dcmtk_file *file) { return file && file->has_meta ? 1 : 0; }

extern "C" dcmtk_status dcmtk_file_transfer_syntax(const dcmtk_file *file, char *buf, size_t capacity) {
    if (!file || !buf || capacity == 0) return DCMTK_INVALID_ARGUMENT;
    snprintf(buf, capacity, "%s", file->xfer_uid.c_str());
    return DCMTK_OK;
}

extern "C" dcmtk_item *dcmtk_file_dataset(dcmtk_file *file) { return file ? as_handle(file->format.getDataset()) : nullptr; }
extern "C" dcmtk_item *dcmtk_file_meta(dcmtk_file *file) { return file ? as_handle(file->format.getMetaInfo()) : nullptr; }

extern "C" dcmtk_status dcmtk_file_convert_to_utf8(dcmtk_file *file) {
    if (!file) return DCMTK_INVALID_ARGUMENT;
    OFCondition c = file->format.convertToUTF8();
    return c.good() ? DCMTK_OK : DCMTK_ENCODE_FAILED;
}

// ---- elements ----------------------------------------------------------------------------

static void fill_info(DcmElement *el, dcmtk_element_info *out) {
    DcmTag tag = el->getTag();
    out->group = tag.getGTag();
    out->element = tag.getETag();
    const char *vr = tag.getVRName();
    out->vr[0] = vr && vr[0] ? vr[0] : 'U';
    out->vr[1] = vr && vr[0] && vr[1] ? vr[1] : 'N';
    out->vr[2] = '\0';
    out->length = el->getLength();
    out->multiplicity = el->getVM();
    out->is_sequence = el->ident() == EVR_SQ ? 1 : 0;
    out->item_count = out->is_sequence ? OFstatic_cast(DcmSequenceOfItems *, el)->card() : 0;
    out->is_encapsulated = 0;
    if (tag == DCM_PixelData) {
        DcmItem *root = el->getRootItem();
        DcmDataset *ds = root ? OFdynamic_cast(DcmDataset *, root) : nullptr;
        if (ds && DcmXfer(ds->getOriginalXfer()).isEncapsulated()) out->is_encapsulated = 1;
    }
}

extern "C" size_t dcmtk_item_count(const dcmtk_item *item) {
    return item ? as_item(const_cast<dcmtk_item *>(item))->card() : 0;
}

extern "C" size_t dcmtk_item_elements(dcmtk_item *item, dcmtk_element_info *out, size_t capacity) {
    if (!item || !out) return 0;
    // One walk of the item's list (DcmItem::getElement(i) walks it from its start for every i).
    DcmItem *it = as_item(item);
    size_t n = 0;
    for (DcmObject *obj = it->nextInContainer(nullptr); obj && n < capacity; obj = it->nextInContainer(obj)) {
        fill_info(OFstatic_cast(DcmElement *, obj), &out[n++]);
    }
    return n;
}

// The item's element list (protected in DcmItem; read through a derived type's member pointer).
struct ItemList : DcmItem {
    static DcmList *of(DcmItem *item) { return item->*(&ItemList::elementList); }
};

// An element of the item by tag. DCMTK's search walks the item's list from its first element; readers here ask for
// tags in ascending order (each value of a walk, one after the other), so the search starts at the list's cursor
// (left at the element found last, or moved by DCMTK itself) when its tag is not past the one asked for. An item's
// list is kept in ascending tag order (DcmItem::insert), so a tag passed over is absent. A cursor past the tag, or
// none (at the list's end), takes DCMTK's own search from the start.
static DcmElement *find(dcmtk_item *item, uint16_t group, uint16_t element) {
    if (!item) return nullptr;
    DcmItem *it = as_item(item);
    const DcmTagKey key(group, element);
    DcmList *list = ItemList::of(it);
    if (list && !list->empty()) {
        DcmObject *cursor = list->get(ELP_atpos);
        if (cursor && !(key < cursor->getTag())) {
            while (cursor && cursor->getTag() < key) cursor = list->seek(ELP_next);
            // Found, or passed over (a larger tag, or the list's end): absent.
            return cursor && cursor->getTag() == key ? OFstatic_cast(DcmElement *, cursor) : nullptr;
        }
    }
    DcmElement *el = nullptr;
    if (it->findAndGetElement(key, el, OFFalse).bad()) return nullptr;
    return el;
}

extern "C" dcmtk_status dcmtk_item_element_info(dcmtk_item *item, uint16_t group, uint16_t element, dcmtk_element_info *out) {
    DcmElement *el = find(item, group, element);
    if (!el) return DCMTK_NOT_FOUND;
    if (out) fill_info(el, out);
    return DCMTK_OK;
}

extern "C" dcmtk_status dcmtk_item_get_string(dcmtk_item *item, uint16_t group, uint16_t element, char **out, size_t *length) {
    if (!out || !length) return DCMTK_INVALID_ARGUMENT;
    *out = nullptr;
    *length = 0;
    DcmElement *el = find(item, group, element);
    if (!el) return DCMTK_NOT_FOUND;
    if (el->ident() == EVR_SQ || el->ident() == EVR_PixelData || el->ident() == EVR_pixelSQ) return DCMTK_WRONG_TYPE;
    OFString value;
    OFCondition c;
    if (el->isaString()) {
        char *raw = nullptr;
        Uint32 len = 0;
        c = el->getString(raw, len);
        if (c.good() && raw) value.assign(raw, len);
    } else {
        c = el->getOFStringArray(value, OFFalse);
    }
    if (c.bad() && value.empty()) return el->getLength() == 0 ? DCMTK_OK : DCMTK_WRONG_TYPE;
    *out = static_cast<char *>(malloc(value.length() + 1));
    if (!*out) return DCMTK_DECODE_FAILED;
    memcpy(*out, value.c_str(), value.length());
    (*out)[value.length()] = '\0';
    *length = value.length();
    return DCMTK_OK;
}

// Number of values of a numeric element, and a reader for value i as double / int64.
static size_t value_count(DcmElement *el) {
    switch (el->ident()) {
    case EVR_US: case EVR_SS: case EVR_OW: return el->getLength() / 2;
    case EVR_UL: case EVR_SL: case EVR_OL: case EVR_FL: case EVR_OF: case EVR_AT: return el->getLength() / 4;
    case EVR_FD: case EVR_OD: case EVR_SV: case EVR_UV: case EVR_OV: return el->getLength() / 8;
    case EVR_OB: case EVR_UN: return el->getLength();
    default: return el->getVM();
    }
}

static bool read_double(DcmElement *el, unsigned long i, double &v) {
    switch (el->ident()) {
    case EVR_US: case EVR_OW: { Uint16 x; if (el->getUint16(x, i).bad()) return false; v = x; return true; }
    case EVR_SS: { Sint16 x; if (el->getSint16(x, i).bad()) return false; v = x; return true; }
    case EVR_UL: case EVR_OL: { Uint32 x; if (el->getUint32(x, i).bad()) return false; v = x; return true; }
    case EVR_SL: case EVR_IS: { Sint32 x; if (el->getSint32(x, i).bad()) return false; v = x; return true; }
    case EVR_FL: case EVR_OF: { Float32 x; if (el->getFloat32(x, i).bad()) return false; v = x; return true; }
    case EVR_FD: case EVR_OD: case EVR_DS: { Float64 x; if (el->getFloat64(x, i).bad()) return false; v = x; return true; }
    case EVR_SV: { Sint64 x; if (el->getSint64(x, i).bad()) return false; v = double(x); return true; }
    case EVR_UV: case EVR_OV: { Uint64 x; if (el->getUint64(x, i).bad()) return false; v = double(x); return true; }
    case EVR_OB: case EVR_UN: { Uint8 x; if (el->getUint8(x, i).bad()) return false; v = x; return true; }
    default: {
        OFString s;
        if (el->getOFString(s, i).bad()) return false;
        char *end = nullptr;
        v = strtod(s.c_str(), &end);
        return end && end != s.c_str();
    }
    }
}

static bool read_int64(DcmElement *el, unsigned long i, int64_t &v) {
    switch (el->ident()) {
    case EVR_SV: { Sint64 x; if (el->getSint64(x, i).bad()) return false; v = x; return true; }
    case EVR_UV: case EVR_OV: { Uint64 x; if (el->getUint64(x, i).bad()) return false; v = int64_t(x); return true; }
    default: {
        double d;  // every other VR fits a double exactly (at most 32-bit integers)
        if (!read_double(el, i, d)) return false;
        v = int64_t(d);
        return true;
    }
    }
}

// Values of a numeric element through `read`; with out == NULL only *count is set.
template <typename T>
static dcmtk_status get_values(dcmtk_item *item, uint16_t group, uint16_t element, T *out, size_t capacity, size_t *count,
                               bool (*read)(DcmElement *, unsigned long, T &)) {
    if (!count) return DCMTK_INVALID_ARGUMENT;
    *count = 0;
    DcmElement *el = find(item, group, element);
    if (!el) return DCMTK_NOT_FOUND;
    if (el->ident() == EVR_SQ) return DCMTK_WRONG_TYPE;
    size_t n = value_count(el);
    if (!out) {
        *count = n;
        return DCMTK_OK;
    }
    size_t k = 0;
    for (size_t i = 0; i < n && k < capacity; i++) {
        T v;
        if (!read(el, OFstatic_cast(unsigned long, i), v)) return k == 0 ? DCMTK_WRONG_TYPE : DCMTK_OK;
        out[k++] = v;
        *count = k;
    }
    return DCMTK_OK;
}

extern "C" dcmtk_status dcmtk_item_get_doubles(dcmtk_item *item, uint16_t group, uint16_t element, double *out, size_t capacity, size_t *count) {
    return get_values<double>(item, group, element, out, capacity, count, read_double);
}

extern "C" dcmtk_status dcmtk_item_get_int64s(dcmtk_item *item, uint16_t group, uint16_t element, int64_t *out, size_t capacity, size_t *count) {
    return get_values<int64_t>(item, group, element, out, capacity, count, read_int64);
}

extern "C" dcmtk_status dcmtk_item_get_tags(dcmtk_item *item, uint16_t group, uint16_t element, uint32_t *out, size_t capacity, size_t *count) {
    if (!count) return DCMTK_INVALID_ARGUMENT;
    *count = 0;
    DcmElement *el = find(item, group, element);
    if (!el) return DCMTK_NOT_FOUND;
    if (el->ident() != EVR_AT) return DCMTK_WRONG_TYPE;
    size_t n = el->getLength() / 4;
    if (!out) {
        *count = n;
        return DCMTK_OK;
    }
    DcmAttributeTag *at = OFstatic_cast(DcmAttributeTag *, el);
    for (size_t i = 0; i < n && i < capacity; i++) {
        DcmTagKey key;
        if (at->getTagVal(key, OFstatic_cast(unsigned long, i)).bad()) break;
        out[i] = uint32_t(key.getGroup()) << 16 | key.getElement();
        *count = i + 1;
    }
    return DCMTK_OK;
}

// The value of el as held by DCMTK, through one of its typed array getters.
template <typename T>
static OFCondition held_bytes(DcmElement *el, OFCondition (DcmElement::*get)(T *&), Uint8 *&bytes) {
    T *values = nullptr;
    OFCondition c = (el->*get)(values);
    bytes = reinterpret_cast<Uint8 *>(values);
    return c;
}

extern "C" dcmtk_status dcmtk_item_get_bytes(dcmtk_item *item, uint16_t group, uint16_t element, const uint8_t **out, size_t *length) {
    if (!out || !length) return DCMTK_INVALID_ARGUMENT;
    *out = nullptr;
    *length = 0;
    DcmElement *el = find(item, group, element);
    if (!el) return DCMTK_NOT_FOUND;
    if (el->ident() == EVR_SQ) return DCMTK_WRONG_TYPE;
    if (el->getLength() == 0) return DCMTK_OK;
    if (el->ident() == EVR_PixelData) {
        DcmPixelData *pd = OFstatic_cast(DcmPixelData *, el);
        DcmDataset *ds = OFdynamic_cast(DcmDataset *, el->getRootItem());
        if (ds && DcmXfer(ds->getOriginalXfer()).isEncapsulated()) {
            // Only the uncompressed representation is a plain byte string.
            if (!pd->canWriteXfer(EXS_LittleEndianExplicit, ds->getOriginalXfer())) return DCMTK_WRONG_TYPE;
        }
    }
    // DCMTK keeps values in host order; getValue-style access through the typed arrays.
    Uint8 *bytes = nullptr;
    OFCondition c;
    switch (el->ident()) {
    case EVR_US: case EVR_SS: case EVR_OW: case EVR_xs: case EVR_lt: case EVR_AT:
        c = held_bytes<Uint16>(el, &DcmElement::getUint16Array, bytes);
        break;
    case EVR_UL: case EVR_SL: case EVR_OL:
        c = held_bytes<Uint32>(el, &DcmElement::getUint32Array, bytes);
        break;
    case EVR_FL: case EVR_OF:
        c = held_bytes<Float32>(el, &DcmElement::getFloat32Array, bytes);
        break;
    case EVR_FD: case EVR_OD:
        c = held_bytes<Float64>(el, &DcmElement::getFloat64Array, bytes);
        break;
    case EVR_SV:
        c = held_bytes<Sint64>(el, &DcmElement::getSint64Array, bytes);
        break;
    case EVR_UV: case EVR_OV:
        c = held_bytes<Uint64>(el, &DcmElement::getUint64Array, bytes);
        break;
    case EVR_PixelData: {
        if (el->getTag().getEVR() == EVR_OW) c = held_bytes<Uint16>(el, &DcmElement::getUint16Array, bytes);
        else c = el->getUint8Array(bytes);
        break;
    }
    default:
        if (el->isaString()) {
            char *s = nullptr;
            Uint32 len = 0;
            c = el->getString(s, len);
            *out = reinterpret_cast<const uint8_t *>(s);
            *length = len;
            return c.good() ? DCMTK_OK : DCMTK_WRONG_TYPE;
        }
        c = el->getUint8Array(bytes);
        if (c.bad()) c = held_bytes<Uint16>(el, &DcmElement::getUint16Array, bytes);
    }
    if (c.bad() || !bytes) return DCMTK_WRONG_TYPE;
    *out = bytes;
    *length = el->getLength();
    return DCMTK_OK;
}

// Pixel data as stored, in chunks: native data is one chunk (the value as held); encapsulated data is one
// chunk per item of its pixel sequence (the offset table first). No decoding: for content hashes.
extern "C" dcmtk_status dcmtk_item_pixel_chunk(dcmtk_item *item, size_t index, const uint8_t **out, size_t *length) {
    if (!out || !length) return DCMTK_INVALID_ARGUMENT;
    *out = nullptr;
    *length = 0;
    DcmElement *el = find(item, 0x7FE0, 0x0010);
    if (!el) return DCMTK_NOT_FOUND;
    if (el->ident() == EVR_PixelData) {
        DcmPixelData *pd = OFstatic_cast(DcmPixelData *, el);
        E_TransferSyntax xfer = EXS_Unknown;
        const DcmRepresentationParameter *parameter = nullptr;
        pd->getOriginalRepresentationKey(xfer, parameter);
        DcmPixelSequence *sequence = nullptr;
        if (DcmXfer(xfer).isEncapsulated() && pd->getEncapsulatedRepresentation(xfer, parameter, sequence).good() && sequence) {
            if (index >= sequence->card()) return DCMTK_NOT_FOUND;
            DcmPixelItem *fragment = nullptr;
            if (sequence->getItem(fragment, OFstatic_cast(unsigned long, index)).bad() || !fragment) return DCMTK_NOT_FOUND;
            if (fragment->getLength() == 0) return DCMTK_OK;
            Uint8 *bytes = nullptr;
            if (fragment->getUint8Array(bytes).bad() || !bytes) return DCMTK_WRONG_TYPE;
            *out = bytes;
            *length = fragment->getLength();
            return DCMTK_OK;
        }
    }
    if (index > 0) return DCMTK_NOT_FOUND;
    return dcmtk_item_get_bytes(item, 0x7FE0, 0x0010, out, length);
}

extern "C" dcmtk_item *dcmtk_item_sequence_item(dcmtk_item *item, uint16_t group, uint16_t element, size_t index) {
    if (!item) return nullptr;
    DcmItem *found = nullptr;
    if (as_item(item)->findAndGetSequenceItem(DcmTagKey(group, element), found, OFstatic_cast(signed long, index)).bad()) return nullptr;
    return as_handle(found);
}

extern "C" dcmtk_item *dcmtk_item_sequence_append(dcmtk_item *item, uint16_t group, uint16_t element) {
    if (!item) return nullptr;
    DcmTagKey key(group, element);
    DcmElement *existing = find(item, group, element);
    if (existing && existing->ident() != EVR_SQ) return nullptr;
    if (!existing) {
        DcmTag tag(key);
        tag.setVR(DcmVR(EVR_SQ));
        if (as_item(item)->insert(new DcmSequenceOfItems(tag), OFTrue).bad()) return nullptr;
    }
    DcmItem *created = nullptr;
    if (as_item(item)->findOrCreateSequenceItem(key, created, -2).bad()) return nullptr;
    return as_handle(created);
}

static DcmElement *new_element(uint16_t group, uint16_t element, const char *vr) {
    DcmTag tag(group, element);
    if (vr && vr[0]) {
        DcmVR v(vr);
        if (v.getEVR() == EVR_UNKNOWN) return nullptr;
        tag.setVR(v);
    } else if (tag.getEVR() == EVR_UNKNOWN || tag.getEVR() == EVR_UNKNOWN2B) {
        tag.setVR(DcmVR(EVR_UN));
    } else if (tag.getEVR() == EVR_xs) {
        tag.setVR(DcmVR(EVR_US));
    } else if (tag.getEVR() == EVR_ox || tag.getEVR() == EVR_px) {
        tag.setVR(DcmVR(EVR_OW));
    } else if (tag.getEVR() == EVR_lt) {
        tag.setVR(DcmVR(EVR_OW));
    }
    DcmElement *el = nullptr;
    if (DcmItem::newDicomElementWithVR(el, tag).bad()) return nullptr;
    return el;
}

static dcmtk_status insert(dcmtk_item *item, DcmElement *el) {
    if (as_item(item)->insert(el, OFTrue).bad()) {
        delete el;
        return DCMTK_INVALID_ARGUMENT;
    }
    return DCMTK_OK;
}

extern "C" dcmtk_status dcmtk_item_put_string(dcmtk_item *item, uint16_t group, uint16_t element, const char *vr, const char *value, size_t length) {
    if (!item || (!value && length)) return DCMTK_INVALID_ARGUMENT;
    DcmElement *el = new_element(group, element, vr);
    if (!el) return DCMTK_INVALID_ARGUMENT;
    if (el->ident() == EVR_SQ) {
        delete el;
        return DCMTK_WRONG_TYPE;
    }
    OFCondition c = el->putString(value ? value : "", OFstatic_cast(Uint32, length));
    if (c.bad()) {
        delete el;
        return DCMTK_WRONG_TYPE;
    }
    return insert(item, el);
}

static std::string format_ds(double v) {
    char buf[32];
    for (int precision = 15; precision > 0; precision--) {
        snprintf(buf, sizeof buf, "%.*g", precision, v);
        if (strlen(buf) <= 16) return buf;
    }
    return "0";
}

extern "C" dcmtk_status dcmtk_item_put_doubles(dcmtk_item *item, uint16_t group, uint16_t element, const char *vr, const double *values, size_t count) {
    if (!item || (!values && count)) return DCMTK_INVALID_ARGUMENT;
    DcmElement *el = new_element(group, element, vr);
    if (!el) return DCMTK_INVALID_ARGUMENT;
    OFCondition c = EC_Normal;
    DcmEVR evr = el->ident();
    if (evr == EVR_DS || evr == EVR_IS) {
        std::string s;
        for (size_t i = 0; i < count; i++) {
            if (i) s += '\\';
            if (evr == EVR_IS) s += std::to_string(int64_t(values[i]));
            else s += format_ds(values[i]);
        }
        c = el->putString(s.c_str(), OFstatic_cast(Uint32, s.size()));
    } else {
        for (size_t i = 0; i < count && c.good(); i++) {
            unsigned long pos = OFstatic_cast(unsigned long, i);
            double v = values[i];
            switch (evr) {
            case EVR_US: case EVR_OW: c = el->putUint16(Uint16(v), pos); break;
            case EVR_SS: c = el->putSint16(Sint16(v), pos); break;
            case EVR_UL: case EVR_OL: c = el->putUint32(Uint32(v), pos); break;
            case EVR_SL: c = el->putSint32(Sint32(v), pos); break;
            case EVR_FL: case EVR_OF: c = el->putFloat32(Float32(v), pos); break;
            case EVR_FD: case EVR_OD: c = el->putFloat64(v, pos); break;
            case EVR_SV: c = OFstatic_cast(DcmSigned64bitVeryLong *, el)->putSint64(Sint64(v), pos); break;
            case EVR_UV: case EVR_OV: c = OFstatic_cast(DcmUnsigned64bitVeryLong *, el)->putUint64(Uint64(v), pos); break;
            default: c = EC_IllegalCall;
            }
        }
    }
    if (c.bad()) {
        delete el;
        return DCMTK_WRONG_TYPE;
    }
    return insert(item, el);
}

extern "C" dcmtk_status dcmtk_item_put_bytes(dcmtk_item *item, uint16_t group, uint16_t element, const char *vr, const uint8_t *bytes, size_t length) {
    if (!item || (!bytes && length)) return DCMTK_INVALID_ARGUMENT;
    DcmElement *el = new_element(group, element, vr);
    if (!el) return DCMTK_INVALID_ARGUMENT;
    OFCondition c;
    Uint32 n = OFstatic_cast(Uint32, length);
    switch (el->ident()) {
    case EVR_OW: case EVR_US: case EVR_SS: case EVR_PixelData:
        if (el->ident() == EVR_PixelData && el->getTag().getEVR() != EVR_OW) {
            c = el->putUint8Array(bytes, n);
        } else {
            c = (length % 2) ? EC_IllegalCall : el->putUint16Array(reinterpret_cast<const Uint16 *>(bytes), n / 2);
        }
        break;
    case EVR_UL: case EVR_SL: case EVR_OL:
        c = (length % 4) ? EC_IllegalCall : el->putUint32Array(reinterpret_cast<const Uint32 *>(bytes), n / 4);
        break;
    case EVR_FL: case EVR_OF:
        c = (length % 4) ? EC_IllegalCall : el->putFloat32Array(reinterpret_cast<const Float32 *>(bytes), n / 4);
        break;
    case EVR_FD: case EVR_OD:
        c = (length % 8) ? EC_IllegalCall : el->putFloat64Array(reinterpret_cast<const Float64 *>(bytes), n / 8);
        break;
    case EVR_OV: case EVR_UV: case EVR_SV:
        c = (length % 8) ? EC_IllegalCall : el->putUint8Array(bytes, n);
        break;
    default:
        if (el->isaString()) c = el->putString(reinterpret_cast<const char *>(bytes), n);
        else c = el->putUint8Array(bytes, n);
    }
    if (c.bad()) {
        delete el;
        return DCMTK_WRONG_TYPE;
    }
    return insert(item, el);
}

extern "C" dcmtk_status dcmtk_item_put_tags(dcmtk_item *item, uint16_t group, uint16_t element, const uint32_t *tags, size_t count) {
    if (!item || (!tags && count)) return DCMTK_INVALID_ARGUMENT;
    DcmElement *el = new_element(group, element, "AT");
    if (!el) return DCMTK_INVALID_ARGUMENT;
    DcmAttributeTag *at = OFstatic_cast(DcmAttributeTag *, el);
    for (size_t i = 0; i < count; i++) {
        if (at->putTagVal(DcmTagKey(Uint16(tags[i] >> 16), Uint16(tags[i] & 0xFFFF)), OFstatic_cast(unsigned long, i)).bad()) {
            delete el;
            return DCMTK_WRONG_TYPE;
        }
    }
    return insert(item, el);
}

extern "C" dcmtk_status dcmtk_item_put_empty(dcmtk_item *item, uint16_t group, uint16_t element, const char *vr) {
    if (!item) return DCMTK_INVALID_ARGUMENT;
    DcmElement *el = new_element(group, element, vr);
    if (!el) return DCMTK_INVALID_ARGUMENT;
    return insert(item, el);
}

extern "C" dcmtk_status dcmtk_item_remove(dcmtk_item *item, uint16_t group, uint16_t element) {
    if (!item) return DCMTK_INVALID_ARGUMENT;
    // Found from the list's cursor (see find), the element is removed where the cursor stands: DcmItem's own
    // removal searches the list again from its start, twice.
    DcmElement *el = find(item, group, element);
    if (!el) return DCMTK_NOT_FOUND;
    DcmList *list = ItemList::of(as_item(item));
    if (list->get(ELP_atpos) == el) {
        DcmObject *removed = list->remove();   // unlinked, not deleted; the cursor moves to the next element
        removed->setParent(nullptr);
        delete removed;
        return DCMTK_OK;
    }
    OFCondition c = as_item(item)->findAndDeleteElement(DcmTagKey(group, element), OFFalse, OFFalse);
    if (c == EC_TagNotFound) return DCMTK_NOT_FOUND;
    return c.good() ? DCMTK_OK : DCMTK_INVALID_ARGUMENT;
}

extern "C" int dcmtk_dictionary_lookup(uint16_t group, uint16_t element, char *keyword, size_t keyword_capacity, char vr[3]) {
    dcmtk_initialize();
    DcmTag tag(group, element);
    DcmEVR evr = tag.getEVR();
    if (evr == EVR_UNKNOWN || evr == EVR_UNKNOWN2B) return 0;
    const char *name = tag.getTagName();
    if (!name || strcmp(name, DcmTag_ERROR_TagName) == 0) return 0;
    if (keyword && keyword_capacity) snprintf(keyword, keyword_capacity, "%s", name);
    if (vr) {
        const char *v = tag.getVRName();
        vr[0] = v && v[0] ? v[0] : 'U';
        vr[1] = v && v[0] && v[1] ? v[1] : 'N';
        vr[2] = '\0';
    }
    return 1;
}

// ---- pixels ------------------------------------------------------------------------------

namespace {

struct OpjMemory {
    const uint8_t *data;
    size_t length;
    size_t position;
};

OPJ_SIZE_T opj_read(void *buffer, OPJ_SIZE_T bytes, void *user) {
    OpjMemory *m = static_cast<OpjMemory *>(user);
    if (m->position >= m->length) return OPJ_SIZE_T(-1);
    size_t n = std::min<size_t>(bytes, m->length - m->position);
    memcpy(buffer, m->data + m->position, n);
    m->position += n;
    return n;
}
OPJ_OFF_T opj_skip(OPJ_OFF_T bytes, void *user) {
    OpjMemory *m = static_cast<OpjMemory *>(user);
    if (bytes < 0) {
        if (size_t(-bytes) > m->position) return -1;
        m->position -= size_t(-bytes);
        return bytes;
    }
    size_t n = std::min<size_t>(size_t(bytes), m->length - m->position);
    m->position += n;
    return OPJ_OFF_T(n);
}
OPJ_BOOL opj_seek(OPJ_OFF_T to, void *user) {
    OpjMemory *m = static_cast<OpjMemory *>(user);
    if (to < 0 || size_t(to) > m->length) return OPJ_FALSE;
    m->position = size_t(to);
    return OPJ_TRUE;
}
void opj_silent(const char *, void *) {}

bool is_jpeg2000_family(const std::string &uid) {
    return uid == "1.2.840.10008.1.2.4.90" || uid == "1.2.840.10008.1.2.4.91" || uid == "1.2.840.10008.1.2.4.92" ||
           uid == "1.2.840.10008.1.2.4.93" || uid == "1.2.840.10008.1.2.4.201" || uid == "1.2.840.10008.1.2.4.202" ||
           uid == "1.2.840.10008.1.2.4.203";
}

void store_sample(uint8_t *dst, uint32_t bytes_per_sample, int64_t v) {
    for (uint32_t b = 0; b < bytes_per_sample; b++) dst[b] = uint8_t((uint64_t(v) >> (8 * b)) & 0xFF);
}

// Decodes one JPEG 2000 (or HTJ2K) codestream into interleaved stored values.
dcmtk_status decode_j2k_frame(const uint8_t *data, size_t length, const dcmtk_pixel_info &info, uint8_t *out) {
    OpjMemory mem{data, length, 0};
    bool jp2 = length >= 12 && memcmp(data + 4, "jP  ", 4) == 0;
    opj_codec_t *codec = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
    if (!codec) return DCMTK_DECODE_FAILED;
    opj_set_info_handler(codec, opj_silent, nullptr);
    opj_set_warning_handler(codec, opj_silent, nullptr);
    opj_set_error_handler(codec, opj_silent, nullptr);
    opj_dparameters_t params;
    opj_set_default_decoder_parameters(&params);
    opj_stream_t *stream = opj_stream_default_create(OPJ_TRUE);
    opj_image_t *image = nullptr;
    dcmtk_status st = DCMTK_DECODE_FAILED;
    if (stream && opj_setup_decoder(codec, &params)) {
        opj_stream_set_read_function(stream, opj_read);
        opj_stream_set_skip_function(stream, opj_skip);
        opj_stream_set_seek_function(stream, opj_seek);
        opj_stream_set_user_data(stream, &mem, nullptr);
        opj_stream_set_user_data_length(stream, length);
        if (opj_read_header(stream, codec, &image) && opj_decode(codec, stream, image) && opj_end_decompress(codec, stream)) {
            uint32_t spp = info.samples_per_pixel;
            bool fits = image->numcomps >= spp;
            for (uint32_t c = 0; fits && c < spp; c++) {
                const opj_image_comp_t &comp = image->comps[c];
                fits = comp.w == info.columns && comp.h == info.rows && comp.data != nullptr;
            }
            if (fits) {
                size_t pixels = size_t(info.rows) * info.columns;
                for (size_t i = 0; i < pixels; i++)
                    for (uint32_t c = 0; c < spp; c++)
                        store_sample(out + (i * spp + c) * info.bytes_per_sample, info.bytes_per_sample, image->comps[c].data[i]);
                st = DCMTK_OK;
            } else {
                st = DCMTK_BAD_PIXEL_DESCRIPTION;
            }
        }
    }
    if (image) opj_image_destroy(image);
    if (stream) opj_stream_destroy(stream);
    opj_destroy_codec(codec);
    return st;
}

// Splits the fragments of encapsulated pixel data into frames (one byte string per frame).
dcmtk_status frame_codestreams(DcmPixelSequence *seq, uint32_t frames, std::vector<std::vector<uint8_t>> &out) {
    unsigned long count = seq->card();
    if (count < 2) return DCMTK_NO_PIXEL_DATA;
    std::vector<std::pair<const uint8_t *, size_t>> fragments;
    std::vector<size_t> offsets;  // of each fragment item from the first fragment's item start
    size_t offset = 0;
    for (unsigned long i = 1; i < count; i++) {
        DcmPixelItem *item = nullptr;
        if (seq->getItem(item, i).bad() || !item) return DCMTK_DECODE_FAILED;
        Uint8 *bytes = nullptr;
        if (item->getLength() > 0 && (item->getUint8Array(bytes).bad() || !bytes)) return DCMTK_DECODE_FAILED;
        fragments.push_back({bytes, item->getLength()});
        offsets.push_back(offset);
        offset += 8 + item->getLength();
    }
    out.assign(frames, {});
    if (frames == 1) {
        for (auto &f : fragments) out[0].insert(out[0].end(), f.first, f.first + f.second);
        return DCMTK_OK;
    }
    if (fragments.size() == frames) {
        for (uint32_t f = 0; f < frames; f++) out[f].assign(fragments[f].first, fragments[f].first + fragments[f].second);
        return DCMTK_OK;
    }
    // Basic offset table, else a new frame at every fragment starting with a J2K SOC marker.
    std::vector<size_t> starts;
    DcmPixelItem *table = nullptr;
    if (seq->getItem(table, 0).good() && table && table->getLength() == frames * 4) {
        Uint8 *raw = nullptr;
        table->getUint8Array(raw);
        for (uint32_t f = 0; raw && f < frames; f++) {
            // DCMTK holds the table as read; it is little endian in every encapsulated syntax.
            starts.push_back(size_t(raw[4 * f]) | size_t(raw[4 * f + 1]) << 8 | size_t(raw[4 * f + 2]) << 16 | size_t(raw[4 * f + 3]) << 24);
        }
    }
    std::vector<int> frame_of(fragments.size(), -1);
    if (starts.size() == frames) {
        int f = -1;
        for (size_t i = 0; i < fragments.size(); i++) {
            while (f + 1 < int(frames) && offsets[i] >= starts[size_t(f + 1)]) f++;
            frame_of[i] = f;
        }
    } else {
        int f = -1;
        for (size_t i = 0; i < fragments.size(); i++) {
            const uint8_t *b = fragments[i].first;
            // A J2K codestream starts with SOC + SIZ; a JPEG or JPEG-LS one with SOI and a marker.
            bool j2k = fragments[i].second >= 4 && b[0] == 0xFF && b[1] == 0x4F && b[2] == 0xFF && b[3] == 0x51;
            bool jpeg = fragments[i].second >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF;
            if (j2k || jpeg) f++;
            frame_of[i] = f;
        }
    }
    for (size_t i = 0; i < fragments.size(); i++) {
        int f = frame_of[i];
        if (f < 0 || f >= int(frames)) continue;
        out[size_t(f)].insert(out[size_t(f)].end(), fragments[i].first, fragments[i].first + fragments[i].second);
    }
    for (auto &f : out)
        if (f.empty()) return DCMTK_PIXEL_DATA_TRUNCATED;
    return DCMTK_OK;
}

// The fragments of encapsulated pixel data, whatever syntax DCMTK believes it read them in.
DcmPixelSequence *encapsulated_sequence(dcmtk_file *file, DcmElement *pixel) {
    DcmPixelData *pd = OFstatic_cast(DcmPixelData *, pixel);
    DcmPixelSequence *seq = nullptr;
    if (pd->getEncapsulatedRepresentation(file->xfer, nullptr, seq).good() && seq) return seq;
    static const E_TransferSyntax candidates[] = {EXS_JPEG2000LosslessOnly, EXS_JPEG2000, EXS_DeflatedLittleEndianExplicit};
    for (E_TransferSyntax x : candidates)
        if (pd->getEncapsulatedRepresentation(x, nullptr, seq).good() && seq) return seq;
    return nullptr;
}

}  // namespace

extern "C" dcmtk_status dcmtk_decode_pixels(dcmtk_file *file, dcmtk_pixel_info *info, uint8_t **out, size_t *length) {
    if (!file || !info || !out || !length) return DCMTK_INVALID_ARGUMENT;
    *out = nullptr;
    *length = 0;
    memset(info, 0, sizeof *info);
    DcmDataset *ds = file->format.getDataset();
    DcmElement *pixel = nullptr;
    if (ds->findAndGetElement(DCM_PixelData, pixel, OFFalse).bad() || !pixel) return DCMTK_NO_PIXEL_DATA;

    Uint16 rows = 0, columns = 0, spp = 1, ba = 0, bs = 0, hb = 0, pr = 0, planar = 0;
    if (ds->findAndGetUint16(DCM_Rows, rows).bad() || ds->findAndGetUint16(DCM_Columns, columns).bad() ||
        ds->findAndGetUint16(DCM_BitsAllocated, ba).bad())
        return DCMTK_BAD_PIXEL_DESCRIPTION;
    if (ds->findAndGetUint16(DCM_SamplesPerPixel, spp).bad()) spp = 1;
    if (ds->findAndGetUint16(DCM_BitsStored, bs).bad() || bs == 0) bs = ba;
    if (ds->findAndGetUint16(DCM_HighBit, hb).bad()) hb = Uint16(bs - 1);
    ds->findAndGetUint16(DCM_PixelRepresentation, pr);
    ds->findAndGetUint16(DCM_PlanarConfiguration, planar);
    Sint32 frames = 1;
    if (ds->findAndGetSint32(DCM_NumberOfFrames, frames).bad() || frames < 1) frames = 1;
    if (rows == 0 || columns == 0 || spp == 0 || spp > 4 || !(ba == 1 || ba == 8 || ba == 16 || ba == 32) || bs > ba || hb >= ba)
        return DCMTK_BAD_PIXEL_DESCRIPTION;
    const uint64_t pixels_per_frame = uint64_t(rows) * columns;
    const uint64_t cap = uint64_t(4) << 30;  // 4 GiB of decoded samples: more is not an image we take
    const uint32_t bytes_per_sample = ba <= 8 ? 1 : ba <= 16 ? 2 : 4;
    const uint64_t out_frame = pixels_per_frame * spp * bytes_per_sample;
    if (out_frame * uint64_t(frames) > cap) return DCMTK_BAD_PIXEL_DESCRIPTION;

    info->rows = rows;
    info->columns = columns;
    info->samples_per_pixel = spp;
    info->frames = uint32_t(frames);
    info->bits_allocated = ba;
    info->bits_stored = bs;
    info->high_bit = hb;
    info->pixel_representation = pr;
    info->planar_configuration = planar;
    info->bytes_per_sample = bytes_per_sample;

    OFString photometric;
    ds->findAndGetOFString(DCM_PhotometricInterpretation, photometric);

    const std::string &uid = file->xfer_uid;
    bool encapsulated = DcmXfer(file->xfer).isEncapsulated() || is_jpeg2000_family(uid);
    const size_t total = size_t(out_frame * uint64_t(frames));
    uint8_t *buffer = static_cast<uint8_t *>(malloc(total ? total : 1));
    if (!buffer) return DCMTK_DECODE_FAILED;

    if (uid == "1.2.840.10008.1.2.8.1") {
        // Deflated Image Frame Compression: each frame is a raw deflate stream of the native encoding.
        DcmPixelSequence *seq = encapsulated_sequence(file, pixel);
        if (!seq) {
            free(buffer);
            return DCMTK_DECODE_FAILED;
        }
        std::vector<std::vector<uint8_t>> streams;
        dcmtk_status st = frame_codestreams(seq, uint32_t(frames), streams);
        const size_t native_size = ba == 1 ? size_t((pixels_per_frame * spp + 7) / 8) : size_t(out_frame);
        std::vector<uint8_t> native(native_size);
        for (uint32_t f = 0; st == DCMTK_OK && f < uint32_t(frames); f++) {
            z_stream z;
            memset(&z, 0, sizeof z);
            if (inflateInit2(&z, -15) != Z_OK) {
                st = DCMTK_DECODE_FAILED;
                break;
            }
            z.next_in = streams[f].data();
            z.avail_in = uInt(streams[f].size());
            z.next_out = native.data();
            z.avail_out = uInt(native.size());
            int r = inflate(&z, Z_FINISH);
            size_t produced = native.size() - z.avail_out;
            inflateEnd(&z);
            if ((r != Z_STREAM_END && r != Z_BUF_ERROR && r != Z_OK) || produced < native.size()) {
                st = produced < native.size() ? DCMTK_PIXEL_DATA_TRUNCATED : DCMTK_DECODE_FAILED;
                break;
            }
            uint8_t *dst = buffer + size_t(out_frame) * f;
            if (ba == 1) {
                for (uint64_t i = 0; i < pixels_per_frame * spp; i++) dst[i] = (native[i / 8] >> (i % 8)) & 1;
            } else if (spp > 1 && planar == 1) {
                for (uint32_t c = 0; c < spp; c++)
                    for (uint64_t i = 0; i < pixels_per_frame; i++)
                        memcpy(dst + (i * spp + c) * bytes_per_sample, native.data() + (c * pixels_per_frame + i) * bytes_per_sample, bytes_per_sample);
            } else {
                memcpy(dst, native.data(), native.size());
            }
        }
        if (st != DCMTK_OK) {
            free(buffer);
            return st;
        }
        snprintf(info->photometric, sizeof info->photometric, "%s", photometric.c_str());
        *out = buffer;
        *length = total;
        return DCMTK_OK;
    }

    if (encapsulated && is_jpeg2000_family(uid)) {
        if (ba == 1) {
            free(buffer);
            return DCMTK_BAD_PIXEL_DESCRIPTION;
        }
        DcmPixelSequence *seq = encapsulated_sequence(file, pixel);
        if (!seq) {
            free(buffer);
            return DCMTK_DECODE_FAILED;
        }
        std::vector<std::vector<uint8_t>> streams;
        dcmtk_status st = frame_codestreams(seq, uint32_t(frames), streams);
        for (uint32_t f = 0; st == DCMTK_OK && f < uint32_t(frames); f++)
            st = decode_j2k_frame(streams[f].data(), streams[f].size(), *info, buffer + size_t(out_frame) * f);
        if (st != DCMTK_OK) {
            free(buffer);
            return st;
        }
        // The codestream's multi-component transform already gave RGB.
        if (photometric == "YBR_ICT" || photometric == "YBR_RCT") photometric = "RGB";
        info->planar_configuration = planar;
        snprintf(info->photometric, sizeof info->photometric, "%s", photometric.c_str());
        *out = buffer;
        *length = total;
        return DCMTK_OK;
    }

    if (encapsulated) {
        if (file->xfer == EXS_Unknown) {
            free(buffer);
            return DCMTK_UNSUPPORTED_SYNTAX;
        }
        OFCondition c = ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
        if (c.bad() || !ds->canWriteXfer(EXS_LittleEndianExplicit)) {
            free(buffer);
            DcmXfer x(file->xfer);
            bool known_codec = x.isEncapsulated() && (x.getXfer() != EXS_JPEG2000LosslessOnly && x.getXfer() != EXS_JPEG2000);
            // DCMTK has no decoder registered for some encapsulated syntaxes (e.g. deflated image frames).
            return (c == EC_CannotChangeRepresentation && !known_codec) || c == EC_CannotChangeRepresentation
                       ? DCMTK_UNSUPPORTED_SYNTAX
                       : DCMTK_DECODE_FAILED;
        }
        // The decoder may have rewritten the photometric interpretation (YBR → RGB) and planar configuration.
        photometric.clear();
        ds->findAndGetOFString(DCM_PhotometricInterpretation, photometric);
        planar = 0;
        ds->findAndGetUint16(DCM_PlanarConfiguration, planar);
        ds->findAndGetElement(DCM_PixelData, pixel, OFFalse);
    }

    const uint8_t *raw = nullptr;
    size_t raw_length = 0;
    {
        Uint8 *bytes = nullptr;
        OFCondition c;
        if (pixel->getTag().getEVR() == EVR_OW || pixel->getVR() == EVR_OW) {
            Uint16 *w = nullptr;
            c = pixel->getUint16Array(w);
            bytes = reinterpret_cast<Uint8 *>(w);
        } else {
            c = pixel->getUint8Array(bytes);
            if (c.bad()) {
                Uint16 *w = nullptr;
                c = pixel->getUint16Array(w);
                bytes = reinterpret_cast<Uint8 *>(w);
            }
        }
        if (c.bad() || (!bytes && pixel->getLength() > 0)) {
            free(buffer);
            return DCMTK_DECODE_FAILED;
        }
        raw = bytes;
        raw_length = pixel->getLength();
    }

    const bool ybr422 = !encapsulated && spp == 3 && photometric == "YBR_FULL_422";
    if (ba == 1) {
        uint64_t bits = pixels_per_frame * spp * uint64_t(frames);
        if (raw_length * 8 < bits) {
            free(buffer);
            return DCMTK_PIXEL_DATA_TRUNCATED;
        }
        for (uint64_t i = 0; i < bits; i++) buffer[i] = (raw[i / 8] >> (i % 8)) & 1;  // LSB first
    } else if (ybr422) {
        // Two pixels share one Cb and one Cr: Y1 Y2 Cb Cr → (Y1 Cb Cr) (Y2 Cb Cr).
        if (columns % 2 != 0 || ba != 8) {
            free(buffer);
            return DCMTK_BAD_PIXEL_DESCRIPTION;
        }
        uint64_t in_frame = pixels_per_frame * 2;
        if (raw_length < in_frame * uint64_t(frames)) {
            free(buffer);
            return DCMTK_PIXEL_DATA_TRUNCATED;
        }
        for (uint64_t f = 0; f < uint64_t(frames); f++) {
            const uint8_t *src = raw + f * in_frame;
            uint8_t *dst = buffer + f * out_frame;
            for (uint64_t i = 0; i < pixels_per_frame; i += 2) {
                const uint8_t *q = src + i * 2;
                dst[i * 3 + 0] = q[0];
                dst[i * 3 + 1] = q[2];
                dst[i * 3 + 2] = q[3];
                dst[i * 3 + 3] = q[1];
                dst[i * 3 + 4] = q[2];
                dst[i * 3 + 5] = q[3];
            }
        }
        photometric = "YBR_FULL";
    } else {
        if (raw_length < total) {
            free(buffer);
            return DCMTK_PIXEL_DATA_TRUNCATED;
        }
        if (spp > 1 && planar == 1) {
            for (uint64_t f = 0; f < uint64_t(frames); f++) {
                const uint8_t *src = raw + f * out_frame;
                uint8_t *dst = buffer + f * out_frame;
                for (uint32_t c = 0; c < spp; c++)
                    for (uint64_t i = 0; i < pixels_per_frame; i++)
                        memcpy(dst + (i * spp + c) * bytes_per_sample, src + (c * pixels_per_frame + i) * bytes_per_sample, bytes_per_sample);
            }
        } else {
            memcpy(buffer, raw, total);
        }
        // DCMTK swaps OW values as 16-bit words; 32-bit samples read big endian need their halves swapped too.
        if (bytes_per_sample == 4 && file->xfer == EXS_BigEndianExplicit && pixel->getTag().getEVR() == EVR_OW) {
            for (size_t i = 0; i + 4 <= total; i += 4) {
                uint8_t a = buffer[i], b = buffer[i + 1];
                buffer[i] = buffer[i + 2];
                buffer[i + 1] = buffer[i + 3];
                buffer[i + 2] = a;
                buffer[i + 3] = b;
            }
        }
    }
    info->planar_configuration = planar;
    snprintf(info->photometric, sizeof info->photometric, "%s", photometric.c_str());
    *out = buffer;
    *length = total;
    return DCMTK_OK;
}

// ---- writing -----------------------------------------------------------------------------

static dcmtk_status prepare_write(dcmtk_file *file, const char *transfer_syntax, E_TransferSyntax &xfer) {
    DcmDataset *ds = file->format.getDataset();
    if (!transfer_syntax || !*transfer_syntax) {
        xfer = file->xfer;
        if (xfer == EXS_Unknown) return DCMTK_UNSUPPORTED_SYNTAX;
        return DCMTK_OK;
    }
    DcmXfer wanted(transfer_syntax);
    xfer = wanted.getXfer();
    if (xfer == EXS_Unknown) return DCMTK_UNSUPPORTED_SYNTAX;
    if (xfer != file->xfer || !ds->canWriteXfer(xfer)) {
        OFCondition c = ds->chooseRepresentation(xfer, nullptr);
        if (c.bad() || !ds->canWriteXfer(xfer)) return DCMTK_ENCODE_FAILED;
    }
    return DCMTK_OK;
}

// A new file meta for writing in `xfer`: nothing of the old header survives (source AE titles, private
// information) but the SOP Class and Instance UIDs, taken from the dataset, else from the old header. DCMTK's
// own update would invent what is missing (a private generic SOP Class, a random instance UID per write).
static dcmtk_status rebuild_meta(DcmFileFormat &format, E_TransferSyntax xfer) {
    DcmMetaInfo *meta = format.getMetaInfo();
    DcmDataset *ds = format.getDataset();
    if (!meta || !ds) return DCMTK_WRITE_FAILED;
    OFString sop_class, sop_instance;
    if (ds->findAndGetOFStringArray(DCM_SOPClassUID, sop_class).bad() || sop_class.empty())
        meta->findAndGetOFStringArray(DCM_MediaStorageSOPClassUID, sop_class);
    if (ds->findAndGetOFStringArray(DCM_SOPInstanceUID, sop_instance).bad() || sop_instance.empty())
        meta->findAndGetOFStringArray(DCM_MediaStorageSOPInstanceUID, sop_instance);
    meta->clear();
    if (!sop_class.empty()) meta->putAndInsertString(DCM_MediaStorageSOPClassUID, sop_class.c_str());
    if (!sop_instance.empty()) meta->putAndInsertString(DCM_MediaStorageSOPInstanceUID, sop_instance.c_str());
    if (format.validateMetaInfo(xfer, EWM_fileformat).bad()) return DCMTK_WRITE_FAILED;
    if (sop_class.empty()) delete meta->remove(DCM_MediaStorageSOPClassUID);
    if (sop_instance.empty()) delete meta->remove(DCM_MediaStorageSOPInstanceUID);
    if (meta->computeGroupLengthAndPadding(EGL_withGL, EPD_noChange, META_HEADER_DEFAULT_TRANSFERSYNTAX, EET_UndefinedLength).bad())
        return DCMTK_WRITE_FAILED;
    return DCMTK_OK;
}

extern "C" dcmtk_status dcmtk_file_save(dcmtk_file *file, const char *path, const char *transfer_syntax) {
    if (!file || !path) return DCMTK_INVALID_ARGUMENT;
    E_TransferSyntax xfer;
    dcmtk_status st = prepare_write(file, transfer_syntax, xfer);
    if (st != DCMTK_OK) return st;
    st = rebuild_meta(file->format, xfer);
    if (st != DCMTK_OK) return st;
    OFCondition c = file->format.saveFile(OFFilename(path), xfer, EET_ExplicitLength, EGL_recalcGL, EPD_noChange, 0, 0, EWM_dontUpdateMeta);
    return c.good() ? DCMTK_OK : DCMTK_WRITE_FAILED;
}

extern "C" int dcmtk_transfer_syntax_writable(const char *uid) {
    return uid && DcmXfer(uid).getXfer() != EXS_Unknown ? 1 : 0;
}

extern "C" dcmtk_status dcmtk_file_save_memory(dcmtk_file *file, const char *transfer_syntax, uint8_t **out, size_t *length) {
    if (!file || !out || !length) return DCMTK_INVALID_ARGUMENT;
    *out = nullptr;
    *length = 0;
    const char *tmpdir = getenv("TMPDIR");
    std::string templ = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/dicom-etl-XXXXXX";
    std::vector<char> name(templ.begin(), templ.end());
    name.push_back('\0');
    int fd = mkstemp(name.data());
    if (fd < 0) return DCMTK_IO_ERROR;
    close(fd);
    dcmtk_status st = dcmtk_file_save(file, name.data(), transfer_syntax);
    if (st == DCMTK_OK) {
        MappedFile mapped;
        st = map_file(name.data(), mapped);
        if (st == DCMTK_OK) {
            *out = static_cast<uint8_t *>(malloc(mapped.length ? mapped.length : 1));
            if (*out) {
                if (mapped.length) memcpy(*out, mapped.data, mapped.length);
                *length = mapped.length;
            } else {
                st = DCMTK_IO_ERROR;
            }
        }
    }
    unlink(name.data());
    return st;
}

// ---- frames as stored, rendering -------------------------------------------------------

extern "C" dcmtk_status dcmtk_encapsulated_frame(dcmtk_file *file, uint32_t index, uint8_t **out, size_t *length) {
    if (!file || !out || !length) return DCMTK_INVALID_ARGUMENT;
    *out = nullptr;
    *length = 0;
    DcmDataset *ds = file->format.getDataset();
    DcmElement *pixel = nullptr;
    if (ds->findAndGetElement(DCM_PixelData, pixel, OFFalse).bad() || !pixel) return DCMTK_NO_PIXEL_DATA;
    bool encapsulated = DcmXfer(file->xfer).isEncapsulated() || is_jpeg2000_family(file->xfer_uid);
    if (!encapsulated) return DCMTK_WRONG_TYPE;
    Sint32 frames = 1;
    if (ds->findAndGetSint32(DCM_NumberOfFrames, frames).bad() || frames < 1) frames = 1;
    if (index >= uint32_t(frames)) return DCMTK_NOT_FOUND;
    DcmPixelSequence *seq = encapsulated_sequence(file, pixel);
    if (!seq) return DCMTK_WRONG_TYPE;
    std::vector<std::vector<uint8_t>> streams;
    dcmtk_status st = frame_codestreams(seq, uint32_t(frames), streams);
    if (st != DCMTK_OK) return st;
    const std::vector<uint8_t> &frame = streams[index];
    *out = static_cast<uint8_t *>(malloc(frame.empty() ? 1 : frame.size()));
    if (!*out) return DCMTK_IO_ERROR;
    if (!frame.empty()) memcpy(*out, frame.data(), frame.size());
    *length = frame.size();
    return DCMTK_OK;
}

extern "C" dcmtk_status dcmtk_encode_jpeg8(const uint8_t *pixels, uint32_t rows, uint32_t columns, uint32_t samples, int quality,
                                           uint8_t **out, size_t *length) {
    if (!pixels || !out || !length || rows == 0 || columns == 0 || rows > 65535 || columns > 65535 || (samples != 1 && samples != 3))
        return DCMTK_INVALID_ARGUMENT;
    dcmtk_initialize();
    *out = nullptr;
    *length = 0;
    DJCodecParameter parameters(ECC_lossyYCbCr, EDC_photometricInterpretation, EUC_never, EPC_default);
    DJCompressIJG8Bit encoder(parameters, EJM_baseline, Uint8(quality < 1 ? 1 : quality > 100 ? 100 : quality));
    std::vector<Uint8> buffer(pixels, pixels + size_t(rows) * columns * samples);
    Uint8 *to = nullptr;
    Uint32 to_length = 0;
    OFCondition c = encoder.encode(Uint16(columns), Uint16(rows), samples == 3 ? EPI_RGB : EPI_Monochrome2, Uint16(samples),
                                   buffer.data(), to, to_length);
    if (c.bad() || !to) {
        delete[] to;
        return DCMTK_ENCODE_FAILED;
    }
    *out = static_cast<uint8_t *>(malloc(to_length ? to_length : 1));
    if (*out) memcpy(*out, to, to_length);
    delete[] to;
    if (!*out) return DCMTK_IO_ERROR;
    *length = to_length;
    return DCMTK_OK;
}

extern "C" int dcmtk_dictionary_find(const char *keyword, uint16_t *group, uint16_t *element) {
    if (!keyword || !*keyword || !group || !element) return 0;
    dcmtk_initialize();
    DcmTag tag;
    if (DcmTag::findTagFromName(keyword, tag).bad()) return 0;
    if (tag.getGroup() & 1) return 0;
    *group = tag.getGroup();
    *element = tag.getElement();
    return 1;
}

extern "C" void dcmtk_free(void *pointer) { free(pointer); }
