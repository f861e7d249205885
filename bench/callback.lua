-- wrk script for the callback benchmark (bench/run.py): replays Cloud Tasks deliveries against followupd.
--
--   wrk -t T -c C -d D -s bench/callback.lua http://127.0.0.1:PORT -- REQUESTS_FILE TOKENS_FILE
--
-- REQUESTS_FILE: one task per line, "<path>\t<json body>" (what the task would POST). TOKENS_FILE: one valid OIDC
-- token per line. Thread k of T sends lines k, k+T, k+2T, ... once each, rotating through the tokens, with the
-- headers Cloud Tasks sends; a thread that has sent all its lines stops once their answers are in. done()
-- prints one line "WRK_RESULT {json}" with the number of requests and answers per status.

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  thread:set("nthreads", 0) -- set below, once every thread is known
  table.insert(threads, thread)
  next_id = next_id + 1
  for _, t in ipairs(threads) do t:set("nthreads", #threads) end
end

local function read_lines(path)
  local out = {}
  for line in io.lines(path) do
    if line ~= "" then out[#out + 1] = line end
  end
  return out
end

function init(args)
  local all = read_lines(args[1])
  tokens = read_lines(args[2])
  mine = {}
  for i = id, #all, nthreads do mine[#mine + 1] = all[i] end
  nmine = #mine
  sent = 0
  answered = 0
  statuses = {}
end

function request()
  if sent >= #mine then
    -- everything sent: repeat the last request (answered "already executed"); response() stops the thread
    sent = sent + 1
    local path, body = mine[#mine]:match("^([^\t]+)\t(.*)$")
    return wrk.format("POST", path, {["Content-Type"] = "application/json",
                                     ["Authorization"] = "Bearer " .. tokens[1]}, body)
  end
  sent = sent + 1
  local path, body = mine[sent]:match("^([^\t]+)\t(.*)$")
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[(sent % #tokens) + 1],
    ["User-Agent"] = "Google-Cloud-Tasks",
    ["X-CloudTasks-QueueName"] = "followups",
    ["X-CloudTasks-TaskRetryCount"] = "0",
    ["X-CloudTasks-TaskExecutionCount"] = "0",
  }
  return wrk.format("POST", path, headers, body)
end

function response(status, headers, body)
  answered = answered + 1
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if answered >= #mine then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local total = {}
  local lines = 0
  local answers = 0
  for _, t in ipairs(threads) do
    answers = answers + t:get("answered")
    lines = lines + t:get("nmine")
    local st = t:get("statuses")
    for k, v in pairs(st) do total[k] = (total[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(total) do parts[#parts + 1] = string.format('"%s":%d', k, v) end
  io.write(string.format('WRK_RESULT {"lines":%d,"answers":%d,"statuses":{%s}}\n', lines, answers,
                         table.concat(parts, ",")))
end
