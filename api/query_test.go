package api_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/api"
)

// metricSum adds up the samples of /metrics whose line starts with prefix
// (a metric name and, optionally, the start of its labels).
func metricSum(t *testing.T, h *hostileEnv, prefix string) float64 {
	t.Helper()
	r := h.Do("GET", "/metrics", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	sum := 0.0
	for _, line := range strings.Split(string(r.Body), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		require.NoError(t, err, line)
		sum += v
	}
	return sum
}

// A filter of 60,000 characters cost a list 141-172 ms of CPU: the store
// lower-cased it again for every index key it walked. It is now refused
// before the engine runs: no list operation, no event.
func TestHostileLongFilterNeverReachesTheStore(t *testing.T) {
	h := newHostileEnv(t, "bolt")
	touched := func() [3]float64 {
		return [3]float64{
			metricSum(t, h, `hsmca_store_operation_duration_seconds_count{backend="bolt",operation="list"}`),
			metricSum(t, h, `hsmca_store_operation_duration_seconds_count{backend="bolt",operation="append_events"}`),
			metricSum(t, h, `hsmca_events_total{event="PCA_CERTIFICATE_RETRIEVE_LIST"`),
		}
	}
	// One list first, so that every series exists and the test sees the
	// counters move when a request does reach the store.
	require.Equal(t, http.StatusOK, h.send(request{method: "GET", path: pcaCerts + "?name=x"}).Status)
	before := touched()
	for _, name := range []string{strings.Repeat("a", 60000), strings.Repeat("a", 65), strings.Repeat("é", 65)} {
		r := h.send(request{method: "GET", path: pcaCerts + "?name=" + url.QueryEscape(name)})
		require.Equal(t, http.StatusBadRequest, r.Status, "%.300s", r.Body)
		checkFamilyEnvelope(t, "pca", r.Status, r.Body)
		assert.Equal(t, api.PCACodeBadParameter, r.Map(t)["error_code"])
		assert.Less(t, len(r.Body), 300, "the answer does not echo the value")
	}
	assert.Equal(t, before, touched(), "a refused filter reaches neither the store nor the event log")
	require.Equal(t, http.StatusOK, h.send(request{method: "GET", path: pcaCerts + "?name=x"}).Status)
	assert.NotEqual(t, before, touched(), "the counters do see a list that runs")
}

// Every query parameter of every family is bounded: each row answers 400
// in its family's envelope (the Huawei families with their bad-parameter
// code) and leaves nothing behind.
func TestHostileQueryParameters(t *testing.T) {
	h := newHostileEnv(t, "bolt")
	apigPath := "/v2/" + h.tenant + "/apigw/certificates"
	long := func(n int) string { return strings.Repeat("x", n) }
	type route struct {
		family, path string
		admin        bool
	}
	var (
		pcaCAList   = route{"pca", pcaCAs, false}
		pcaCertList = route{"pca", pcaCerts, false}
		pcaDelete   = route{"pca", pcaCAs + "/5b6f2c1e-3a4d-4e8f-9a0b-1c2d3e4f5a6b", false}
		apigList    = route{"apig", apigPath, false}
		dtsCAs      = route{"native", "/v1/ecosystems/certificates/ca", false}
		dtsSigners  = route{"native", "/v1/ecosystems/certificates/vical-signers", false}
		keys        = route{"native", "/v1/keys", false}
		events      = route{"native", "/v1/events", false}
		tokens      = route{"native", "/v1/tokens", true}
	)
	rows := []struct {
		name  string
		route route
		query string
	}{
		{"name too long", pcaCAList, "name=" + long(65)},
		{"name with NUL", pcaCAList, "name=a%00b"},
		{"name with RLO", pcaCAList, "name=a%E2%80%AEb"},
		{"name not UTF-8", pcaCAList, "name=%FF"},
		{"name twice", pcaCAList, "name=a&name=b"},
		{"status too long", pcaCAList, "status=" + long(17)},
		{"status with space", pcaCAList, "status=ACTIVED%20"},
		{"type too long", pcaCAList, "type=" + long(17)},
		{"type with slash", pcaCAList, "type=ROOT/x"},
		{"sort_key too long", pcaCAList, "sort_key=" + long(33)},
		{"sort_dir too long", pcaCAList, "sort_dir=" + long(9)},
		{"limit over 1000", pcaCAList, "limit=1001"},
		{"limit negative", pcaCAList, "limit=-1"},
		{"limit not a number", pcaCAList, "limit=ten"},
		{"limit of 1,900 digits", pcaCAList, "limit=" + strings.Repeat("1", 1900)},
		{"offset over int32", pcaCAList, "offset=2147483648"},
		{"offset negative", pcaCAList, "offset=-1"},
		{"offset twice", pcaCAList, "offset=1&offset=2"},

		{"name too long", pcaCertList, "name=" + strings.Repeat("é", 65)},
		{"name with newline", pcaCertList, "name=a%0Ab"},
		{"name with zero-width space", pcaCertList, "name=a%E2%80%8Bb"},
		{"status too long", pcaCertList, "status=" + long(17)},
		{"sort_key with dot", pcaCertList, "sort_key=a.b"},
		{"sort_dir with quote", pcaCertList, "sort_dir=%22"},
		{"limit over 1000", pcaCertList, "limit=1001"},
		{"offset not a number", pcaCertList, "offset=1e3"},

		{"pending_days too short", pcaDelete, "pending_days=6"},
		{"pending_days 21 digits", pcaDelete, "pending_days=" + strings.Repeat("9", 21)},

		{"name too long", apigList, "name=" + long(65)},
		{"name with tab", apigList, "name=a%09b"},
		{"common_name too long", apigList, "common_name=" + long(65)},
		{"common_name with LRE", apigList, "common_name=a%E2%80%AAb"},
		{"signature_algorithm too long", apigList, "signature_algorithm=" + long(33)},
		{"signature_algorithm with space", apigList, "signature_algorithm=SHA256%20RSA"},
		{"type too long", apigList, "type=" + long(33)},
		{"instance_id too long", apigList, "instance_id=" + long(65)},
		{"instance_id with star", apigList, "instance_id=*"},
		{"offset of 21 characters", apigList, "offset=-" + strings.Repeat("9", 20)},
		{"offset not a number", apigList, "offset=1e3"},
		{"limit not a number", apigList, "limit=x"},
		{"limit twice", apigList, "limit=1&limit=2"},
		{"algorithm_type too long", apigList, "algorithm_type=" + long(9)},
		{"algorithm_type not a type", apigList, "algorithm_type=DSA"},
		{"algorithm_type lower case", apigList, "algorithm_type=ecc"},

		{"limit 0", dtsCAs, "limit=0"},
		{"cursor too long", dtsCAs, "cursor=" + long(129)},
		{"cursor with NUL", dtsCAs, "cursor=%00garbage"},
		{"limit over 1000", dtsSigners, "limit=1001"},
		{"cursor with slash", dtsSigners, "cursor=a/b"},

		{"limit 0", keys, "limit=0"},
		{"cursor too long", keys, "cursor=" + long(129)},
		{"cursor with plus", keys, "cursor=a%2Bb"},

		{"operation too long", events, "operation=" + long(65)},
		{"operation with dot", events, "operation=KEY.SIGN"},
		{"outcome too long", events, "outcome=" + long(17)},
		{"cursor too long", events, "cursor=" + strings.Repeat("1", 21)},
		{"after too long", events, "after=" + strings.Repeat("1", 21)},
		{"since too long", events, "since=" + long(65)},
		{"since with space", events, "since=2025-01-01%2000:00:00Z"},
		{"limit over 1000", events, "limit=1001"},

		{"tenant too long", tokens, "tenant=" + long(65)},
		{"tenant with dot", tokens, "tenant=a.b"},
		{"tenant twice", tokens, "tenant=a&tenant=b"},
	}
	before := h.census()
	for _, row := range rows {
		param := row.query[:strings.IndexByte(row.query, '=')]
		t.Run(row.route.family+" "+trimPath(row.route.path)+"/"+row.name, func(t *testing.T) {
			method := "GET"
			if row.route == pcaDelete {
				method = "DELETE"
			}
			r := h.send(request{method: method, path: row.route.path + "?" + row.query, admin: row.route.admin})
			require.Equal(t, http.StatusBadRequest, r.Status, "body: %.300s", r.Body)
			checkFamilyEnvelope(t, row.route.family, r.Status, r.Body)
			m := r.Map(t)
			switch row.route.family {
			case "pca":
				assert.Equal(t, api.PCACodeBadParameter, m["error_code"])
				assert.Contains(t, m["error_msg"], param)
			case "apig":
				assert.Equal(t, api.APIGCodeBadValue, m["error_code"])
				assert.Contains(t, m["error_msg"], param)
			case "native":
				d := m["details"].([]any)[0].(map[string]any)
				assert.Equal(t, param, d["param"])
				assert.Equal(t, "query", d["location"])
			}
			assert.Less(t, len(r.Body), 400, "the answer does not echo a long value")
		})
	}
	assert.Equal(t, before, h.census(), "a refused query changed something")

	// The whole query string is bounded; unknown parameters are ignored.
	tooLong := "?unknown=" + long(2048)
	for _, rt := range []route{pcaCertList, apigList, keys, {"czertainly", "/v1/admins", true}, {"native", "/healthz", false}} {
		r := h.send(request{method: "GET", path: rt.path + tooLong, admin: rt.admin})
		assert.Equal(t, http.StatusBadRequest, r.Status, "%s: %.300s", rt.path, r.Body)
		checkFamilyEnvelope(t, rt.family, r.Status, r.Body)
		r = h.send(request{method: "GET", path: rt.path + "?unknown=" + long(1000), admin: rt.admin})
		assert.Equal(t, http.StatusOK, r.Status, "%s: %.300s", rt.path, r.Body)
	}
}

// Values at their bounds are accepted and filter as before: a 64-character
// common name, in multi-byte characters, finds its certificate and CA.
func TestQueryParametersAtTheirBounds(t *testing.T) {
	h := newHostileEnv(t, "bolt")
	cn := strings.Repeat("é", 32) + strings.Repeat("Z", 32)
	root := h.call("POST", pcaCAs, map[string]any{"type": "ROOT", "distinguished_name": pcaFullDN(cn),
		"key_algorithm": "EC256", "signature_algorithm": "SHA256", "validity": pcaYears(10)}, false)
	require.Equal(t, http.StatusOK, root.Status, "%s", root.Body)
	rootID := root.Map(t)["ca_id"].(string)
	leaf := h.call("POST", pcaCerts, map[string]any{"issuer_id": rootID, "distinguished_name": map[string]any{"common_name": cn},
		"validity": map[string]any{"type": "DAY", "value": 1}}, false)
	require.Equal(t, http.StatusOK, leaf.Status, "%s", leaf.Body)

	needle := url.QueryEscape(strings.ToUpper(cn))
	r := h.send(request{method: "GET", path: pcaCerts + "?name=" + needle + "&sort_key=common_name&sort_dir=ASC&limit=1000&offset=0&status=ISSUED"})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	assert.EqualValues(t, 1, r.Map(t)["total"])
	r = h.send(request{method: "GET", path: pcaCAs + "?name=" + needle + "&type=ROOT&status=ACTIVED&sort_key=common_name&offset=2147483647"})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	assert.EqualValues(t, 1, r.Map(t)["total"])

	apigPath := "/v2/" + h.tenant + "/apigw/certificates"
	q := fmt.Sprintf("?name=%s&common_name=%s&signature_algorithm=%s&type=instance&instance_id=%s&offset=0&limit=9999",
		strings.Repeat("n", 64), needle, strings.Repeat("S", 32), strings.Repeat("i", 64))
	r = h.send(request{method: "GET", path: apigPath + q})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	assert.Regexp(t, regexp.MustCompile(`"total":0`), string(r.Body))

	for _, path := range []string{
		"/v1/events?operation=key_%2A&outcome=success&since=2025-01-31T12:00:00.123456789%2B01:00&limit=1000&after=" + strings.Repeat("0", 20),
		"/v1/keys?limit=1000",
		"/v1/ecosystems/certificates/ca?limit=1000",
	} {
		r = h.send(request{method: "GET", path: path})
		assert.Equal(t, http.StatusOK, r.Status, "%s: %s", path, r.Body)
	}
	r = h.send(request{method: "GET", path: "/v1/tokens?tenant=" + strings.Repeat("t", 64), admin: true})
	assert.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
}
