-- One distinct token per request (cold verified-token cache), read from $TOKENS.
local tokens = {}
local i = 0

function init(args)
  local path = os.getenv("TOKENS")
  for line in io.lines(path) do
    tokens[#tokens + 1] = line
  end
  -- Each wrk thread starts at a different offset so threads do not share tokens.
  i = (tonumber(args[1]) or 0) * 1000
end

function request()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("GET", "/small", { ["Host"] = "api", ["Authorization"] = "Bearer " .. tokens[i] })
end
