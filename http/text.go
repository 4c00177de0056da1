package http

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Free text (names, room descriptions, comments) is shown to every viewer and written to
// logs: control characters other than tab and newline (NUL, CR, ESC, DEL, the C1 range...)
// are refused with code 400, as is text that is not valid UTF-8 (decodeParams refuses that
// for every parameter of an API route, whichever encoding it came in).

// checkText refuses a control character other than tab and newline in the named parameter.
func (p params) checkText(name string) error {
	v := p[name]
	i := strings.IndexFunc(v, func(r rune) bool { return r != '\t' && r != '\n' && unicode.IsControl(r) })
	if i < 0 {
		return nil
	}
	r, _ := utf8.DecodeRuneInString(v[i:])
	return &badInput{msg: name + "不能包含控制字符（" + controlName(r) + "）；只允许制表符和换行"}
}

// controlName names a control character for a message: "U+0000".
func controlName(r rune) string {
	const hex = "0123456789ABCDEF"
	return "U+" + string([]byte{hex[r>>12&0xF], hex[r>>8&0xF], hex[r>>4&0xF], hex[r&0xF]})
}

// validUTF8 refuses a parameter name or value that is not valid UTF-8 (strict), or makes it
// valid, each bad sequence becoming U+FFFD (lenient: Aliyun's callbacks, which must not be
// lost over one odd byte).
func validUTF8(p params, strict bool) error {
	for k, v := range p {
		if utf8.ValidString(k) && utf8.ValidString(v) {
			continue
		}
		if strict {
			return &badInput{msg: "参数" + capName(k) + "不是合法的UTF-8文本"}
		}
		delete(p, k)
		p[strings.ToValidUTF8(k, "\uFFFD")] = strings.ToValidUTF8(v, "\uFFFD")
	}
	return nil
}

// capName makes a client-chosen parameter name fit for a message: valid UTF-8, at most
// 32 characters.
func capName(k string) string {
	k = strings.ToValidUTF8(k, "\uFFFD")
	if utf8.RuneCountInString(k) <= 32 {
		return k
	}
	n := 0
	for i := range k {
		if n == 31 {
			return k[:i] + "…"
		}
		n++
	}
	return k
}

// replacedSurrogates reports whether decoding the JSON string raw into s replaced an
// escaped lone surrogate ("\ud800") with U+FFFD: encoding/json does that silently, where
// the same text percent-encoded in a query (%ED%A0%80) is invalid UTF-8. It compares the
// U+FFFD in s with those raw spells out itself.
func replacedSurrogates(raw []byte, s string) bool {
	n := strings.Count(s, "\uFFFD")
	if n == 0 {
		return false
	}
	spelled := strings.Count(string(raw), "\uFFFD")
	lower := strings.ToLower(string(raw))
	spelled += strings.Count(lower, `\ufffd`)
	return n > spelled
}
