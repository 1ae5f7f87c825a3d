// Command schema-registry serves the subset of Confluent Schema Registry's REST API that Sluice
// and its clients use, for Avro schemas, in memory: subjects and versions, global schema ids,
// lookups, compatibility levels and compatibility checks (schema resolution by hamba/avro).
//
// It exists because no Confluent-compatible registry can be installed from the package registries
// this project's machines reach (see docs/adr/0001-local-stack.md). Production uses a real one.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
)

const contentType = "application/vnd.schemaregistry.v1+json"

// Confluent's error codes, as its clients expect them.
const (
	errSubjectNotFound   = 40401
	errVersionNotFound   = 40402
	errSchemaNotFound    = 40403
	errIncompatible      = 409
	errInvalidSchema     = 42201
	errInvalidVersion    = 42202
	errInvalidCompatible = 42203
)

var levels = map[string]bool{
	"NONE": true, "BACKWARD": true, "BACKWARD_TRANSITIVE": true, "FORWARD": true,
	"FORWARD_TRANSITIVE": true, "FULL": true, "FULL_TRANSITIVE": true,
}

type schemaEntry struct {
	id     int
	text   string // as first registered, whitespace-normalized
	parsed avro.Schema
}

type version struct {
	version int
	schema  *schemaEntry
}

type registry struct {
	mu       sync.Mutex
	byID     map[int]*schemaEntry
	byText   map[string]*schemaEntry
	subjects map[string][]version
	config   map[string]string
	global   string
	nextID   int
	// journal, when set, gets one JSON line per change (registration, subject deleted, level set):
	// replayed in order at start, it gives every schema the id it had (see load()).
	journal *os.File
}

type change struct {
	Op      string `json:"op"`
	Subject string `json:"subject,omitempty"`
	Schema  string `json:"schema,omitempty"`
	Level   string `json:"level,omitempty"`
}

// record appends a change to the journal; called with r.mu held, after the change was made.
func (r *registry) record(c change) {
	if r.journal == nil {
		return
	}
	line, _ := json.Marshal(c)
	if _, err := r.journal.Write(append(line, '\n')); err != nil {
		log.Printf("schema registry: journal not written: %v", err)
	}
}

// load replays a journal written by record(), then appends to it.
func (r *registry) load(path string) error {
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var c change
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			return fmt.Errorf("%s line %d: %v", path, i+1, err)
		}
		switch c.Op {
		case "register":
			if _, err := r.register(c.Subject, c.Schema); err != nil {
				return fmt.Errorf("%s line %d: %v", path, i+1, err)
			}
		case "delete":
			delete(r.subjects, c.Subject)
			delete(r.config, c.Subject)
		case "config":
			if c.Subject != "" {
				r.config[c.Subject] = c.Level
			} else {
				r.global = c.Level
			}
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	r.journal = f
	return nil
}

func newRegistry(level string) *registry {
	return &registry{
		byID: map[int]*schemaEntry{}, byText: map[string]*schemaEntry{},
		subjects: map[string][]version{}, config: map[string]string{}, global: level, nextID: 1,
	}
}

type apiError struct {
	status int
	code   int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func fail(status, code int, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// parse validates an Avro schema and returns it with its whitespace-normalized text.
func parse(text string) (avro.Schema, string, error) {
	var raw any
	if err := json.Unmarshal([]byte(text), &raw); err != nil {
		return nil, "", fail(422, errInvalidSchema, "Invalid schema: not JSON: %v", err)
	}
	normalized, _ := json.Marshal(raw)
	// A fresh cache per parse: versions of one record name must not see each other.
	s, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
	if err != nil {
		return nil, "", fail(422, errInvalidSchema, "Invalid schema: %v", err)
	}
	return s, string(normalized), nil
}

func (r *registry) level(subject string) string {
	if l, ok := r.config[subject]; ok {
		return l
	}
	return r.global
}

// compatible checks a candidate against a subject's versions under the subject's level.
func (r *registry) compatible(subject string, candidate avro.Schema, against []version) error {
	level := r.level(subject)
	if level == "NONE" || len(against) == 0 {
		return nil
	}
	if !strings.HasSuffix(level, "_TRANSITIVE") {
		against = against[len(against)-1:]
	}
	check := avro.NewSchemaCompatibility()
	for _, v := range against {
		var err error
		switch strings.TrimSuffix(level, "_TRANSITIVE") {
		case "BACKWARD":
			err = check.Compatible(candidate, v.schema.parsed)
		case "FORWARD":
			err = check.Compatible(v.schema.parsed, candidate)
		case "FULL":
			if err = check.Compatible(candidate, v.schema.parsed); err == nil {
				err = check.Compatible(v.schema.parsed, candidate)
			}
		}
		if err != nil {
			return fail(409, errIncompatible,
				"Schema being registered is incompatible with an earlier schema for subject %q (version %d) under %s: %v",
				subject, v.version, level, err)
		}
	}
	return nil
}

func (r *registry) register(subject, text string) (int, error) {
	parsed, normalized, err := parse(text)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	versions := r.subjects[subject]
	for _, v := range versions {
		if v.schema.text == normalized {
			return v.schema.id, nil
		}
	}
	if err := r.compatible(subject, parsed, versions); err != nil {
		return 0, err
	}
	entry, ok := r.byText[normalized]
	if !ok {
		entry = &schemaEntry{id: r.nextID, text: normalized, parsed: parsed}
		r.nextID++
		r.byID[entry.id] = entry
		r.byText[normalized] = entry
	}
	next := 1
	if len(versions) > 0 {
		next = versions[len(versions)-1].version + 1
	}
	r.subjects[subject] = append(versions, version{version: next, schema: entry})
	r.record(change{Op: "register", Subject: subject, Schema: text})
	return entry.id, nil
}

func (r *registry) find(subject, ref string) (version, error) {
	versions, ok := r.subjects[subject]
	if !ok || len(versions) == 0 {
		return version{}, fail(404, errSubjectNotFound, "Subject '%s' not found.", subject)
	}
	if ref == "latest" || ref == "-1" {
		return versions[len(versions)-1], nil
	}
	n, err := strconv.Atoi(ref)
	if err != nil || n < 1 {
		return version{}, fail(422, errInvalidVersion, "The specified version '%s' is not a valid version id. "+
			"Allowed values are between [1, 2^31-1] and the string \"latest\"", ref)
	}
	for _, v := range versions {
		if v.version == n {
			return v, nil
		}
	}
	return version{}, fail(404, errVersionNotFound, "Version %d not found.", n)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func writeErr(w http.ResponseWriter, err error) {
	var api *apiError
	if !errors.As(err, &api) {
		api = fail(500, 50001, "Error in the backend data store: %v", err)
	}
	writeJSON(w, api.status, map[string]any{"error_code": api.code, "message": api.msg})
}

type schemaRequest struct {
	Schema     string `json:"schema"`
	SchemaType string `json:"schemaType"`
}

func readSchema(r *http.Request) (string, error) {
	var req schemaRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return "", fail(422, errInvalidSchema, "Invalid request body: %v", err)
	}
	if req.SchemaType != "" && req.SchemaType != "AVRO" {
		return "", fail(422, errInvalidSchema, "Schema type %s is not supported here; only AVRO", req.SchemaType)
	}
	if req.Schema == "" {
		return "", fail(422, errInvalidSchema, "Empty schema")
	}
	return req.Schema, nil
}

func versionBody(subject string, v version) map[string]any {
	return map[string]any{"subject": subject, "version": v.version, "id": v.schema.id, "schema": v.schema.text}
}

func (r *registry) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]any{}) })
	mux.HandleFunc("GET /subjects", func(w http.ResponseWriter, _ *http.Request) {
		r.mu.Lock()
		defer r.mu.Unlock()
		names := make([]string, 0, len(r.subjects))
		for s := range r.subjects {
			names = append(names, s)
		}
		sort.Strings(names)
		writeJSON(w, 200, names)
	})
	mux.HandleFunc("GET /subjects/{subject}/versions", func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		defer r.mu.Unlock()
		versions, ok := r.subjects[req.PathValue("subject")]
		if !ok {
			writeErr(w, fail(404, errSubjectNotFound, "Subject '%s' not found.", req.PathValue("subject")))
			return
		}
		out := make([]int, len(versions))
		for i, v := range versions {
			out[i] = v.version
		}
		writeJSON(w, 200, out)
	})
	mux.HandleFunc("POST /subjects/{subject}/versions", func(w http.ResponseWriter, req *http.Request) {
		text, err := readSchema(req)
		if err == nil {
			var id int
			if id, err = r.register(req.PathValue("subject"), text); err == nil {
				writeJSON(w, 200, map[string]any{"id": id})
				return
			}
		}
		writeErr(w, err)
	})
	mux.HandleFunc("GET /subjects/{subject}/versions/{version}", func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		defer r.mu.Unlock()
		v, err := r.find(req.PathValue("subject"), req.PathValue("version"))
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, 200, versionBody(req.PathValue("subject"), v))
	})
	mux.HandleFunc("GET /subjects/{subject}/versions/{version}/schema", func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		defer r.mu.Unlock()
		v, err := r.find(req.PathValue("subject"), req.PathValue("version"))
		if err != nil {
			writeErr(w, err)
			return
		}
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write([]byte(v.schema.text))
	})
	// Lookup: is this schema registered under the subject?
	mux.HandleFunc("POST /subjects/{subject}", func(w http.ResponseWriter, req *http.Request) {
		text, err := readSchema(req)
		if err != nil {
			writeErr(w, err)
			return
		}
		_, normalized, err := parse(text)
		if err != nil {
			writeErr(w, err)
			return
		}
		subject := req.PathValue("subject")
		r.mu.Lock()
		defer r.mu.Unlock()
		versions, ok := r.subjects[subject]
		if !ok {
			writeErr(w, fail(404, errSubjectNotFound, "Subject '%s' not found.", subject))
			return
		}
		for _, v := range versions {
			if v.schema.text == normalized {
				writeJSON(w, 200, versionBody(subject, v))
				return
			}
		}
		writeErr(w, fail(404, errSchemaNotFound, "Schema not found"))
	})
	mux.HandleFunc("DELETE /subjects/{subject}", func(w http.ResponseWriter, req *http.Request) {
		subject := req.PathValue("subject")
		r.mu.Lock()
		defer r.mu.Unlock()
		versions, ok := r.subjects[subject]
		if !ok {
			writeErr(w, fail(404, errSubjectNotFound, "Subject '%s' not found.", subject))
			return
		}
		out := make([]int, len(versions))
		for i, v := range versions {
			out[i] = v.version
		}
		delete(r.subjects, subject)
		delete(r.config, subject)
		r.record(change{Op: "delete", Subject: subject})
		writeJSON(w, 200, out)
	})
	mux.HandleFunc("GET /schemas/ids/{id}", func(w http.ResponseWriter, req *http.Request) {
		id, _ := strconv.Atoi(req.PathValue("id"))
		r.mu.Lock()
		defer r.mu.Unlock()
		entry, ok := r.byID[id]
		if !ok {
			writeErr(w, fail(404, errSchemaNotFound, "Schema %s not found", req.PathValue("id")))
			return
		}
		writeJSON(w, 200, map[string]any{"schema": entry.text})
	})
	mux.HandleFunc("POST /compatibility/subjects/{subject}/versions/{version}", func(w http.ResponseWriter, req *http.Request) {
		text, err := readSchema(req)
		if err != nil {
			writeErr(w, err)
			return
		}
		parsed, _, err := parse(text)
		if err != nil {
			writeErr(w, err)
			return
		}
		subject := req.PathValue("subject")
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, ok := r.subjects[subject]; !ok {
			// Nothing to be incompatible with.
			writeJSON(w, 200, map[string]any{"is_compatible": true})
			return
		}
		v, err := r.find(subject, req.PathValue("version"))
		if err != nil {
			writeErr(w, err)
			return
		}
		against := []version{v}
		if req.PathValue("version") == "latest" {
			against = r.subjects[subject]
		}
		if err := r.compatible(subject, parsed, against); err != nil {
			writeJSON(w, 200, map[string]any{"is_compatible": false, "messages": []string{err.Error()}})
			return
		}
		writeJSON(w, 200, map[string]any{"is_compatible": true})
	})
	getConfig := func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		defer r.mu.Unlock()
		subject := req.PathValue("subject")
		if subject == "" {
			writeJSON(w, 200, map[string]any{"compatibilityLevel": r.global})
			return
		}
		l, ok := r.config[subject]
		if !ok {
			if req.URL.Query().Get("defaultToGlobal") != "true" {
				writeErr(w, fail(404, 40408, "Subject '%s' does not have subject-level compatibility configured", subject))
				return
			}
			l = r.global
		}
		writeJSON(w, 200, map[string]any{"compatibilityLevel": l})
	}
	putConfig := func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			Compatibility string `json:"compatibility"`
		}
		if err := json.NewDecoder(req.Body).Decode(&body); err != nil || !levels[body.Compatibility] {
			writeErr(w, fail(422, errInvalidCompatible, "Invalid compatibility level. Valid values are NONE, "+
				"BACKWARD, FORWARD, FULL, BACKWARD_TRANSITIVE, FORWARD_TRANSITIVE, and FULL_TRANSITIVE"))
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if subject := req.PathValue("subject"); subject != "" {
			r.config[subject] = body.Compatibility
		} else {
			r.global = body.Compatibility
		}
		r.record(change{Op: "config", Subject: req.PathValue("subject"), Level: body.Compatibility})
		writeJSON(w, 200, map[string]any{"compatibility": body.Compatibility})
	}
	mux.HandleFunc("GET /config", getConfig)
	mux.HandleFunc("PUT /config", putConfig)
	mux.HandleFunc("GET /config/{subject}", getConfig)
	mux.HandleFunc("PUT /config/{subject}", putConfig)
	return mux
}

func main() {
	addr := flag.String("listen", "127.0.0.1:8081", "address to listen on")
	prefix := flag.String("prefix", "", "path prefix the API is served under as well as at the root, e.g. /apis/ccompat/v7")
	level := flag.String("compatibility", "BACKWARD", "global compatibility level")
	data := flag.String("data", "", "journal file: schemas survive a restart with the ids they had (default: in memory only)")
	flag.Parse()
	if !levels[*level] {
		log.Fatalf("unknown compatibility level %q", *level)
	}
	reg := newRegistry(*level)
	if *data != "" {
		if err := reg.load(*data); err != nil {
			log.Fatalf("schema registry: %v", err)
		}
	}
	mux := reg.routes()
	handler := http.Handler(mux)
	if *prefix != "" {
		root := http.NewServeMux()
		root.Handle(*prefix+"/", http.StripPrefix(*prefix, mux))
		root.Handle("/", mux)
		handler = root
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("schema registry (Confluent API, Avro, journal %q) on http://%s%s", *data, ln.Addr(), *prefix)
	log.Fatal(http.Serve(ln, handler))
}
