package fakeprovider

import (
	"fmt"
	"net/http"
)

// apiError is a status and a provider-shaped body.
type apiError struct {
	status int
	body   string
}

// invalid describes a 400 for a bad request body in provider-neutral
// terms; each flavour renders it in its own shape.
type invalid struct {
	msg   string
	param string // OpenAI "param"; "" renders as null
	code  string // OpenAI "code"; "" renders as null
}

// OpenAIError is an OpenAI-style error body (also used by DeepSeek and by
// Azure for request validation). Empty param or code render as null.
func OpenAIError(typ, code, param, msg string) string {
	b := `{"error":{"message":"","type":"","param":null,"code":null}}`
	b = set(b, "error.message", msg)
	b = set(b, "error.type", typ)
	if param != "" {
		b = set(b, "error.param", param)
	}
	if code != "" {
		b = set(b, "error.code", code)
	}
	return b
}

// AzureError is Azure's own error body, whose code is a string ("401",
// "DeploymentNotFound").
func AzureError(code, msg string) string {
	b := set(`{"error":{"code":"","message":""}}`, "error.code", code)
	return set(b, "error.message", msg)
}

// GoogleError is a Google API error body (Vertex). A non-empty reason adds
// a google.rpc.ErrorInfo detail, which is where Google puts machine-readable
// causes such as API_KEY_INVALID.
func GoogleError(status int, reason, msg string) string {
	b := `{"error":{"code":0,"message":"","status":""}}`
	b = set(b, "error.code", status)
	b = set(b, "error.message", msg)
	b = set(b, "error.status", googleStatus(status))
	if reason != "" {
		b = setRaw(b, "error.details", `[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"","domain":"googleapis.com"}]`)
		b = set(b, "error.details.0.reason", reason)
	}
	return b
}

// GeminiError is GoogleError wrapped in a one-element array, as Gemini's
// OpenAI-compatible surface answers.
func GeminiError(status int, reason, msg string) string {
	return "[" + GoogleError(status, reason, msg) + "]"
}

// googleStatus is the google.rpc.Code name Google pairs with an HTTP status.
func googleStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	}
	return "INTERNAL"
}

// errorShapes renders the three errors every flavour can produce.
type errorShapes struct {
	invalid      func(p invalid) apiError
	notFound     func(method, path string) apiError
	unauthorized func(presented string) apiError
}

// Error message texts follow the real providers (providers.md §1.6, §2, §3,
// §4.1, §5.2) closely enough for clients that match on them.
var (
	openAIErrors = errorShapes{
		invalid: func(p invalid) apiError {
			return apiError{http.StatusBadRequest, OpenAIError("invalid_request_error", p.code, p.param, p.msg)}
		},
		notFound: func(method, path string) apiError {
			return apiError{http.StatusNotFound, OpenAIError("invalid_request_error", "", "", fmt.Sprintf("Invalid URL (%s %s)", method, path))}
		},
		unauthorized: func(presented string) apiError {
			if presented == "" {
				return apiError{http.StatusUnauthorized, OpenAIError("invalid_request_error", "", "",
					"You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")}
			}
			return apiError{http.StatusUnauthorized, OpenAIError("invalid_request_error", "invalid_api_key", "",
				"Incorrect API key provided: "+mask(presented)+". You can find your API key at https://platform.openai.com/account/api-keys.")}
		},
	}
	deepSeekErrors = errorShapes{
		invalid:  openAIErrors.invalid,
		notFound: openAIErrors.notFound,
		unauthorized: func(presented string) apiError {
			return apiError{http.StatusUnauthorized, OpenAIError("authentication_error", "invalid_request_error", "",
				"Authentication Fails, Your api key: "+mask(presented)+" is invalid")}
		},
	}
	azureErrors = errorShapes{
		invalid: openAIErrors.invalid,
		notFound: func(string, string) apiError {
			return apiError{http.StatusNotFound, AzureError("404", "Resource not found")}
		},
		unauthorized: func(string) apiError {
			return apiError{http.StatusUnauthorized, AzureError("401",
				"Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.")}
		},
	}
	geminiErrors = errorShapes{
		invalid: func(p invalid) apiError {
			return apiError{http.StatusBadRequest, GeminiError(http.StatusBadRequest, "", p.msg)}
		},
		notFound: func(method, path string) apiError {
			return apiError{http.StatusNotFound, GeminiError(http.StatusNotFound, "", fmt.Sprintf("Requested entity was not found: %s %s", method, path))}
		},
		// Gemini answers a bad key with 400, not 401 (providers.md §4.1).
		unauthorized: func(string) apiError {
			return apiError{http.StatusBadRequest, GeminiError(http.StatusBadRequest, "API_KEY_INVALID", "API key not valid. Please pass a valid API key.")}
		},
	}
	vertexErrors = errorShapes{
		invalid: func(p invalid) apiError {
			return apiError{http.StatusBadRequest, GoogleError(http.StatusBadRequest, "", p.msg)}
		},
		notFound: func(method, path string) apiError {
			return apiError{http.StatusNotFound, GoogleError(http.StatusNotFound, "", fmt.Sprintf("The requested URL %s was not found on this server (%s).", path, method))}
		},
		unauthorized: func(presented string) apiError {
			reason := "ACCESS_TOKEN_TYPE_UNSUPPORTED" // a credential, but not a token this project accepts
			if presented == "" {
				reason = "CREDENTIALS_MISSING"
			}
			return apiError{http.StatusUnauthorized, GoogleError(http.StatusUnauthorized, reason,
				"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")}
		},
	}
)

// mask shows a key the way providers do in error messages: enough to
// recognise it, never the whole secret.
func mask(key string) string {
	if len(key) < 12 {
		return "****"
	}
	return key[:3] + "****" + key[len(key)-4:]
}
