package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// listParams are the parameters a JSON body may give as an array of
// strings, joined with commas as CloudStack's comma-separated lists.
var listParams = map[string]bool{"domain": true, "ipaddress": true}

// numberParams are the parameters a JSON body may give as a number.
var numberParams = map[string]bool{"duration": true}

// apiError is a client mistake (or a server fault) with the HTTP status
// it is answered with, as {"errorcode":Status,"errortext":Text}.
type apiError struct {
	Status int
	Text   string
}

func (e *apiError) Error() string { return fmt.Sprintf("mgmtserver: %d: %s", e.Status, e.Text) }

func badRequest(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Text: fmt.Sprintf(format, args...)}
}

// readParams reads a request's parameters: the query string, and for a
// POST the JSON object of its body (at most maxBody bytes; beyond, w's
// connection is closed after the 413 answer). Names are
// matched case-insensitively, as CloudStack does, and returned in lower
// case; a name outside allowed, or given twice, is refused.
func readParams(w http.ResponseWriter, r *http.Request, allowed map[string]bool) (map[string]string, *apiError) {
	var body []byte
	contentType := r.Header.Get("Content-Type")
	if r.Method == http.MethodPost {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return nil, &apiError{Status: http.StatusRequestEntityTooLarge, Text: fmt.Sprintf("request body over %d bytes", maxBody)}
			}
			return nil, badRequest("reading the request body: %v", err)
		}
		body = b
	}
	return parseParams(r.Method, r.URL.RawQuery, contentType, body, allowed)
}

// parseParams is readParams on the request's parts, for the fuzz target.
func parseParams(method, rawQuery, contentType string, body []byte, allowed map[string]bool) (map[string]string, *apiError) {
	out := make(map[string]string)
	add := func(name, value string) *apiError {
		key := strings.ToLower(name)
		if !allowed[key] {
			return badRequest("unknown parameter %q", truncate(name))
		}
		if _, dup := out[key]; dup {
			return badRequest("parameter %q given twice", key)
		}
		out[key] = value
		return nil
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, badRequest("malformed query string")
	}
	for name, values := range q {
		for _, v := range values {
			if e := add(name, v); e != nil {
				return nil, e
			}
		}
	}
	if method != http.MethodPost {
		return out, nil
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return out, nil
	}
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil || mt != "application/json" {
			return nil, &apiError{Status: http.StatusUnsupportedMediaType, Text: "a POST body must be a JSON object (Content-Type: application/json)"}
		}
	}
	fields, e := decodeObject(body)
	if e != nil {
		return nil, e
	}
	for _, f := range fields {
		key := strings.ToLower(f.name)
		if !allowed[key] {
			return nil, badRequest("unknown parameter %q", truncate(f.name))
		}
		v, e := jsonValue(key, f.value)
		if e != nil {
			return nil, e
		}
		if e := add(f.name, v); e != nil {
			return nil, e
		}
	}
	return out, nil
}

type jsonField struct {
	name  string
	value json.RawMessage
}

// decodeObject decodes one JSON object, keeping every member in order so
// that a name given twice is seen (encoding/json would keep the last).
func decodeObject(body []byte) ([]jsonField, *apiError) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, badRequest("malformed JSON body")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, badRequest("the JSON body must be an object")
	}
	var fields []jsonField
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, badRequest("malformed JSON body")
		}
		name, ok := tok.(string)
		if !ok {
			return nil, badRequest("malformed JSON body")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, badRequest("malformed JSON body")
		}
		fields = append(fields, jsonField{name: name, value: raw})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, badRequest("malformed JSON body")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badRequest("trailing data after the JSON object")
	}
	return fields, nil
}

// jsonValue converts a member's value to the parameter's string form: a
// string; an array of strings for a list parameter (joined with commas);
// an integer for a number parameter.
func jsonValue(key string, raw json.RawMessage) (string, *apiError) {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return "", badRequest("parameter %q is null", key)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	if listParams[key] {
		var list []*string
		if err := json.Unmarshal(raw, &list); err == nil {
			items := make([]string, 0, len(list))
			for _, item := range list {
				if item == nil {
					return "", badRequest("parameter %q: an element is null", key)
				}
				if strings.Contains(*item, ",") {
					return "", badRequest("parameter %q: an element holds a comma", key)
				}
				items = append(items, *item)
			}
			return strings.Join(items, ","), nil
		}
		return "", badRequest("parameter %q must be a string or an array of strings", key)
	}
	if numberParams[key] {
		var n json.Number
		if err := json.Unmarshal(raw, &n); err == nil {
			return n.String(), nil
		}
		return "", badRequest("parameter %q must be a number or a string", key)
	}
	return "", badRequest("parameter %q must be a string", key)
}

// truncate bounds a client-supplied name quoted into an error.
func truncate(s string) string {
	if len(s) <= maxErrorName {
		return s
	}
	return s[:maxErrorName] + "..."
}
