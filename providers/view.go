package providers

import "unsafe"

// view reads b as a string without copying it. gjson's []byte functions
// copy their input or their result: on a large body each lookup would be
// another copy of it. b must not change while the string is in use.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// offsetIn is where sub, a substring of s, starts in s.
func offsetIn(s, sub string) int {
	return int(uintptr(unsafe.Pointer(unsafe.StringData(sub))) - uintptr(unsafe.Pointer(unsafe.StringData(s))))
}
