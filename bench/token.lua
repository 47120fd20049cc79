-- POST /oauth/token, client_credentials with HTTP Basic (CLIENT_ID, CLIENT_SECRET).
local basic = os.getenv("BASIC")
request = function()
  return wrk.format("POST", "/oauth/token", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic " .. basic,
  }, "grant_type=client_credentials&scope=https%3A%2F%2Fjans.io%2Fscim%2Fusers.read")
end
