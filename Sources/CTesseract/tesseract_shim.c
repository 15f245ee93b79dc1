// tesseract_shim.c — see include/tesseract_shim.h. Tesseract through its C API (capi.h), image preparation
// through Leptonica (top-hat, scaling, border). Nothing here prints: Tesseract's debug output goes to
// /dev/null and Leptonica's messages are switched off.
#include "tesseract_shim.h"

#include <leptonica/allheaders.h>
#include <stdlib.h>
#include <string.h>
#include <tesseract/capi.h>

// libtesseract is built with OpenMP, and its LSTM opens a parallel region of four threads per time step: on two
// busy cores the team's spinning and joining cost more than they save (wall time twice the CPU time, a third of it in
// the kernel). OMP_THREAD_LIMIT=1 would stop it, but libgomp reads it once, when it loads; no parallel region may be
// active (max-active-levels 0) has the same effect at run time, for the whole process. Engines run in parallel on
// threads of their own instead.
extern void omp_set_max_active_levels(int);

struct tess_engine {
    TessBaseAPI *api;
};

const char *tess_library_version(void) { return TessVersion(); }

tess_engine *tess_engine_create(const char *datapath, const char *language, tess_status *status) {
    setMsgSeverity(L_SEVERITY_NONE);
    omp_set_max_active_levels(0);
    if (language == NULL) {
        if (status) *status = TESS_INVALID_ARGUMENT;
        return NULL;
    }
    TessBaseAPI *api = TessBaseAPICreate();
    if (api == NULL) {
        if (status) *status = TESS_OUT_OF_MEMORY;
        return NULL;
    }
    // debug_file must be set before Init to silence the messages Init itself prints.
    TessBaseAPISetVariable(api, "debug_file", "/dev/null");
    if (TessBaseAPIInit3(api, datapath, language) != 0) {
        TessBaseAPIDelete(api);
        if (status) *status = TESS_INIT_FAILED;
        return NULL;
    }
    TessBaseAPISetVariable(api, "debug_file", "/dev/null");
    TessBaseAPISetVariable(api, "user_defined_dpi", "300");
    TessBaseAPISetPageSegMode(api, PSM_SPARSE_TEXT);
    tess_engine *engine = calloc(1, sizeof(tess_engine));
    if (engine == NULL) {
        TessBaseAPIEnd(api);
        TessBaseAPIDelete(api);
        if (status) *status = TESS_OUT_OF_MEMORY;
        return NULL;
    }
    engine->api = api;
    if (status) *status = TESS_OK;
    return engine;
}

void tess_engine_destroy(tess_engine *engine) {
    if (engine == NULL) return;
    TessBaseAPIEnd(engine->api);
    TessBaseAPIDelete(engine->api);
    free(engine);
}

static int valid_image(const uint8_t *gray, int32_t width, int32_t height, int32_t stride) {
    return gray != NULL && width > 0 && height > 0 && width <= 65536 && height <= 65536 && stride >= width;
}

static int valid_options(const tess_layer_options *o) {
    return o != NULL && (o->polarity == 0 || o->polarity == 1) && o->kernel >= 3 && o->kernel <= 255 && (o->kernel & 1) == 1 &&
           o->threshold >= 0 && o->threshold <= 255 && o->gain >= 1 && o->gain <= 32 && o->scale >= 0.125f && o->scale <= 8.0f &&
           o->border >= 0 && o->border <= 256 && (o->block == 0 || o->block == 1);
}

/// An 8 bpp Pix holding a copy of the buffer.
static PIX *pix_from_gray(const uint8_t *gray, int32_t width, int32_t height, int32_t stride) {
    PIX *pix = pixCreate(width, height, 8);
    if (pix == NULL) return NULL;
    l_uint32 *data = pixGetData(pix);
    l_int32 wpl = pixGetWpl(pix);
    for (int32_t y = 0; y < height; y++) {
        l_uint32 *line = data + (size_t)y * wpl;
        const uint8_t *row = gray + (size_t)y * stride;
        for (int32_t x = 0; x < width; x++) SET_DATA_BYTE(line, x, row[x]);
    }
    return pix;
}

/// The glyph layer as a Pix (dark glyphs on white, scaled, bordered), or NULL when out of memory.
static PIX *glyph_layer(const uint8_t *gray, int32_t width, int32_t height, int32_t stride, const tess_layer_options *o) {
    PIX *source = pix_from_gray(gray, width, height, stride);
    if (source == NULL) return NULL;
    PIX *hat = pixTophat(source, o->kernel, o->kernel, o->polarity == 0 ? L_TOPHAT_WHITE : L_TOPHAT_BLACK);
    pixDestroy(&source);
    if (hat == NULL) return NULL;
    l_uint32 *data = pixGetData(hat);
    l_int32 wpl = pixGetWpl(hat);
    int32_t threshold = o->threshold;
    if (threshold == 0) {
        // Automatic: twice the 90th percentile of the top-hat (the background's texture and noise), within 40–100.
        size_t histogram[256] = {0};
        for (int32_t y = 0; y < height; y++) {
            l_uint32 *line = data + (size_t)y * wpl;
            for (int32_t x = 0; x < width; x++) histogram[GET_DATA_BYTE(line, x)]++;
        }
        size_t target = (size_t)width * (size_t)height * 9 / 10, seen = 0;
        int32_t p90 = 255;
        for (int32_t level = 0; level < 256; level++) {
            seen += histogram[level];
            if (seen > target) { p90 = level; break; }
        }
        threshold = 2 * p90;
        if (threshold < 40) threshold = 40;
        if (threshold > 100) threshold = 100;
    }
    for (int32_t y = 0; y < height; y++) {
        l_uint32 *line = data + (size_t)y * wpl;
        for (int32_t x = 0; x < width; x++) {
            int32_t v = GET_DATA_BYTE(line, x);
            int32_t ink = v < threshold ? 0 : v * o->gain;
            SET_DATA_BYTE(line, x, 255 - (ink > 255 ? 255 : ink));
        }
    }
    PIX *scaled = hat;
    if (o->scale != 1.0f) {
        scaled = pixScale(hat, o->scale, o->scale);
        pixDestroy(&hat);
        if (scaled == NULL) return NULL;
    }
    if (o->border == 0) return scaled;
    PIX *framed = pixAddBorder(scaled, o->border, 255);
    pixDestroy(&scaled);
    return framed;
}

tess_status tess_glyph_layer(const uint8_t *gray, int32_t width, int32_t height, int32_t stride,
                             const tess_layer_options *options, uint8_t **out, int32_t *out_width, int32_t *out_height) {
    if (!valid_image(gray, width, height, stride) || !valid_options(options) || out == NULL || out_width == NULL || out_height == NULL)
        return TESS_INVALID_ARGUMENT;
    PIX *layer = glyph_layer(gray, width, height, stride, options);
    if (layer == NULL) return TESS_OUT_OF_MEMORY;
    l_int32 w = pixGetWidth(layer), h = pixGetHeight(layer), wpl = pixGetWpl(layer);
    uint8_t *bytes = malloc((size_t)w * (size_t)h);
    if (bytes == NULL) {
        pixDestroy(&layer);
        return TESS_OUT_OF_MEMORY;
    }
    l_uint32 *data = pixGetData(layer);
    for (l_int32 y = 0; y < h; y++) {
        l_uint32 *line = data + (size_t)y * wpl;
        for (l_int32 x = 0; x < w; x++) bytes[(size_t)y * w + x] = (uint8_t)GET_DATA_BYTE(line, x);
    }
    pixDestroy(&layer);
    *out = bytes;
    *out_width = w;
    *out_height = h;
    return TESS_OK;
}

/// Recognises the Pix and collects its words, boxes mapped by (box - border) / scale + offset.
static tess_status recognise_at(tess_engine *engine, PIX *pix, float scale, int32_t border, int32_t offset_x, int32_t offset_y,
                                int32_t width, int32_t height, tess_word **words, size_t *count) {
    TessBaseAPISetImage2(engine->api, pix);
    if (TessBaseAPIRecognize(engine->api, NULL) != 0) {
        TessBaseAPIClear(engine->api);
        return TESS_RECOGNITION_FAILED;
    }
    size_t capacity = 16, n = 0;
    tess_word *list = malloc(capacity * sizeof(tess_word));
    if (list == NULL) {
        TessBaseAPIClear(engine->api);
        return TESS_OUT_OF_MEMORY;
    }
    TessResultIterator *it = TessBaseAPIGetIterator(engine->api);
    int32_t line = -1;
    if (it != NULL) {
        TessPageIterator *page = TessResultIteratorGetPageIterator(it);
        do {
            if (TessPageIteratorIsAtBeginningOf(page, RIL_TEXTLINE)) line++;
            char *text = TessResultIteratorGetUTF8Text(it, RIL_WORD);
            if (text == NULL) continue;
            int left, top, right, bottom;
            if (!TessPageIteratorBoundingBox(page, RIL_WORD, &left, &top, &right, &bottom) || text[0] == 0) {
                TessDeleteText(text);
                continue;
            }
            if (n == capacity) {
                tess_word *grown = realloc(list, capacity * 2 * sizeof(tess_word));
                if (grown == NULL) {
                    TessDeleteText(text);
                    tess_words_free(list, n);
                    TessResultIteratorDelete(it);
                    TessBaseAPIClear(engine->api);
                    return TESS_OUT_OF_MEMORY;
                }
                list = grown;
                capacity *= 2;
            }
            char *copy = strdup(text);
            TessDeleteText(text);
            if (copy == NULL) continue;
            // Map back to the input's pixels: floor of the start, ceiling of the end, clamped to the image.
            float x0 = (left - border) / scale + offset_x, y0 = (top - border) / scale + offset_y;
            float x1 = (right - border) / scale + offset_x, y1 = (bottom - border) / scale + offset_y;
            int32_t l = (int32_t)x0, t = (int32_t)y0, r = (int32_t)(x1 + 0.999f), b = (int32_t)(y1 + 0.999f);
            if (l < 0) l = 0;
            if (t < 0) t = 0;
            if (r > width) r = width;
            if (b > height) b = height;
            if (r <= l || b <= t) {
                free(copy);
                continue;
            }
            tess_word *w = &list[n++];
            w->left = l;
            w->top = t;
            w->width = r - l;
            w->height = b - t;
            w->confidence = TessResultIteratorConfidence(it, RIL_WORD);
            w->line = line < 0 ? 0 : line;
            w->text = copy;
        } while (TessResultIteratorNext(it, RIL_WORD));
        TessResultIteratorDelete(it);
    }
    TessBaseAPIClear(engine->api);
    *words = list;
    *count = n;
    return TESS_OK;
}

static tess_status recognise(tess_engine *engine, PIX *pix, float scale, int32_t border, int32_t width, int32_t height,
                             tess_word **words, size_t *count) {
    return recognise_at(engine, pix, scale, border, 0, 0, width, height, words, count);
}

tess_status tess_engine_read_region(tess_engine *engine, const uint8_t *gray, int32_t width, int32_t height, int32_t stride,
                                    int32_t x, int32_t y, int32_t region_width, int32_t region_height, int32_t invert,
                                    int32_t target_height, tess_word **words, size_t *count) {
    if (engine == NULL || !valid_image(gray, width, height, stride) || words == NULL || count == NULL || x < 0 || y < 0 ||
        region_width < 1 || region_height < 1 || x + region_width > width || y + region_height > height || target_height < 8 ||
        target_height > 512)
        return TESS_INVALID_ARGUMENT;
    float scale = (float)target_height / (float)region_height;
    if (scale > 8.0f) scale = 8.0f;
    if (scale < 0.125f) scale = 0.125f;
    PIX *cut = pix_from_gray(gray + (size_t)y * stride + x, region_width, region_height, stride);
    if (cut == NULL) return TESS_OUT_OF_MEMORY;
    if (invert) pixInvert(cut, cut);
    PIX *scaled = pixScale(cut, scale, scale);
    pixDestroy(&cut);
    if (scaled == NULL) return TESS_OUT_OF_MEMORY;
    int32_t border = target_height / 2;
    PIX *framed = pixAddBorder(scaled, border, 255);
    pixDestroy(&scaled);
    if (framed == NULL) return TESS_OUT_OF_MEMORY;
    TessBaseAPISetPageSegMode(engine->api, PSM_SINGLE_LINE);
    tess_status status = recognise_at(engine, framed, scale, border, x, y, width, height, words, count);
    TessBaseAPISetPageSegMode(engine->api, PSM_SPARSE_TEXT);
    pixDestroy(&framed);
    return status;
}

tess_status tess_engine_read_layer(tess_engine *engine, const uint8_t *gray, int32_t width, int32_t height, int32_t stride,
                                   const tess_layer_options *options, tess_word **words, size_t *count) {
    if (engine == NULL || !valid_image(gray, width, height, stride) || !valid_options(options) || words == NULL || count == NULL)
        return TESS_INVALID_ARGUMENT;
    PIX *layer = glyph_layer(gray, width, height, stride, options);
    if (layer == NULL) return TESS_OUT_OF_MEMORY;
    if (options->block) TessBaseAPISetPageSegMode(engine->api, PSM_SINGLE_BLOCK);
    tess_status status = recognise(engine, layer, options->scale, options->border, width, height, words, count);
    if (options->block) TessBaseAPISetPageSegMode(engine->api, PSM_SPARSE_TEXT);
    pixDestroy(&layer);
    return status;
}

tess_status tess_engine_read(tess_engine *engine, const uint8_t *gray, int32_t width, int32_t height, int32_t stride,
                             tess_word **words, size_t *count) {
    if (engine == NULL || !valid_image(gray, width, height, stride) || words == NULL || count == NULL) return TESS_INVALID_ARGUMENT;
    PIX *pix = pix_from_gray(gray, width, height, stride);
    if (pix == NULL) return TESS_OUT_OF_MEMORY;
    tess_status status = recognise(engine, pix, 1.0f, 0, width, height, words, count);
    pixDestroy(&pix);
    return status;
}

void tess_words_free(tess_word *words, size_t count) {
    if (words == NULL) return;
    for (size_t i = 0; i < count; i++) free(words[i].text);
    free(words);
}

void tess_free(void *pointer) { free(pointer); }
