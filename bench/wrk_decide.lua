-- wrk script: POST /flags/?v=2 (PostHog decide), a different organization per request.
-- Env: BENCH_TOKEN (project api token), BENCH_ORGS (number of orgs, keys org-00000...),
--      BENCH_KEYS (optional JSON list for flag_keys_to_evaluate, e.g. ["a","b"]),
--      BENCH_RANDOM=1 (pick orgs at random instead of round-robin).
local token = os.getenv("BENCH_TOKEN") or "phc_bench_api_token_0123456789"
local n_orgs = tonumber(os.getenv("BENCH_ORGS") or "20000")
local keys = os.getenv("BENCH_KEYS")
local random = os.getenv("BENCH_RANDOM") == "1"
local counter = 0
local tid = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = (tid or 0) * 7919
  math.randomseed(12345 + (tid or 0))
end

wrk.method = "POST"
wrk.path = "/flags/?v=2"
wrk.headers["Content-Type"] = "application/json"

function request()
  counter = counter + 1
  local i = random and math.random(0, n_orgs - 1) or (counter % n_orgs)
  local extra = keys and (',"flag_keys_to_evaluate":' .. keys) or ""
  local body = string.format(
    '{"api_key":"%s","distinct_id":"user-%d","groups":{"organization":"org-%05d"}%s}',
    token, counter, i, extra)
  return wrk.format(nil, nil, nil, body)
end
