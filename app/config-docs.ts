/**
 * What every configuration variable means, in one place: `npm run docs:config` (scripts/docs-config.ts)
 * writes README.md's configuration table and `.env.example` from it, and `npm run docs:config -- --check`
 * (run in CI) fails when either has drifted. test/ops/config-docs.test.ts holds it to what app/config.ts,
 * app/notify/config.ts, app/auth/config.ts, app/guardrails/config.ts and app/env.ts really read. Data only: nothing here is used at
 * run time.
 */

export interface ConfigDocVariable {
  name: string;
  /**
   * Written, commented out, into .env.example: the default itself, so the line changes nothing even once
   * uncommented; empty where the default is worked out (a blank value counts as unset) and for secrets.
   */
  value: string;
  /** Shown in .env.example's comment where the default alone does not show what a value looks like. */
  example?: string;
  /** Never given a value in .env.example (app/redact.ts masks it in logs). */
  secret?: true;
}

export interface ConfigDocRow {
  /** The variables of one README row, in the order the Variable column names them. */
  variables: ConfigDocVariable[];
  /** The Variable column when it is not the variables' names (a family the service does not read itself). */
  label?: string;
  /** The Default column, Markdown. */
  default: string;
  /** The Meaning column, Markdown. */
  meaning: string;
}

export const CONFIG_DOCS: readonly ConfigDocRow[] = [
  { variables: [{ name: 'PORT', value: '8000' }], default: '`8000`', meaning: 'HTTP port' },
  { variables: [{ name: 'HOST', value: '127.0.0.1' }], default: '`127.0.0.1`', meaning: 'Address to listen on' },
  {
    variables: [{ name: 'DATABASE_URL', value: './data/instances.db', example: 'sqlite:///var/lib/ec2-creator/instances.db' }],
    default: '`./data/instances.db`',
    meaning: "The store. A SQLite file (`path`, `file:path` or `sqlite:///abs/path`; a `?query` or `#fragment` is refused): a relative path is resolved from the server's working directory (for `npm start`, `npm run dev` and `manage_server.sh`, the checkout), its folder is created on first run, and one server holds it (`<file>.lock` while it runs, `<file>.owner` says who). Or `postgres://user:password@host:port/database` (also `postgresql://`): PostgreSQL, which several servers may share (see [Running several replicas](#running-several-replicas)). Any other scheme is refused",
  },
  {
    variables: [{ name: 'SCRIPTS_DIR', value: '' }],
    default: '`<repo>/aws_cli_bash_scripts`',
    meaning: 'Where the EC2 scripts live',
  },
  {
    variables: [{ name: 'KEY_NAME', value: 'my_ec2_keypair' }],
    default: '`my_ec2_keypair`',
    meaning: 'EC2 key pair for new instances (also in `ssh_string`)',
  },
  {
    variables: [{ name: 'KEY_FILE', value: '', example: '~/.ssh/team-ec2.pem' }],
    default: '`~/.ssh/<KEY_NAME>.pem`',
    meaning: "Where people keep `KEY_NAME`'s private key, as `ssh_string` names it (an absolute path or one under `~/`; never opened by the service). The sandbox sets it to the key file it makes",
  },
  {
    variables: [{ name: 'ALLOWED_INSTANCE_TYPES', value: 't3.micro,t4g.micro' }],
    default: '`t3.micro,t4g.micro`',
    meaning: 'Instance types a caller may launch',
  },
  {
    variables: [{ name: 'MAX_STORAGE_GB', value: '30' }],
    default: '`30`',
    meaning: 'Largest root volume in GiB (the free-tier allowance)',
  },
  {
    variables: [{ name: 'SCRIPT_TIMEOUT_MS', value: '300000' }],
    default: '`300000`',
    meaning: 'Limit on one script run; on expiry its whole process group is killed (504)',
  },
  {
    variables: [
      { name: 'CREATE_TIMEOUT_MS', value: '' },
      { name: 'START_TIMEOUT_MS', value: '' },
      { name: 'STOP_TIMEOUT_MS', value: '' },
      { name: 'TERMINATE_TIMEOUT_MS', value: '' },
      { name: 'DESCRIBE_TIMEOUT_MS', value: '' },
    ],
    default: '`SCRIPT_TIMEOUT_MS`',
    meaning: 'The limit for one kind of script',
  },
  {
    variables: [{ name: 'MAX_CONCURRENT_SCRIPTS', value: '8' }],
    default: '`8`',
    meaning: 'Changing operations (create, start, stop, terminate) running at once on this server; reads never take one of these slots. Per replica: N replicas on one PostgreSQL run up to N times this, and share one queue',
  },
  {
    variables: [{ name: 'COALESCE_WINDOW_MS', value: '50' }],
    default: '`50`',
    meaning: 'Starts, stops or terminates of the same kind that arrive within this window share one script run (one AWS call for all of them); each keeps its own operation, result and error. `0` runs each on its own',
  },
  {
    variables: [{ name: 'POLL_INTERVAL_S', value: '5' }],
    default: '`5`',
    meaning: 'Seconds between the reads of EC2 a create, start or stop makes while it waits for `running` or `stopped` (each read is one `describe-instances` call)',
  },
  {
    variables: [{ name: 'LAUNCH_LOOKUP_S', value: '30' }],
    default: '`30`',
    meaning: "How long a launch whose outcome is not known (its script timed out, was killed or printed nothing usable after EC2 may have launched) is looked for by its client token, with growing pauses (2, 4, 8, 16 s), before its request is answered; EC2's reads lag behind a launch. Later syncs and start-up go on looking. `0`: one look",
  },
  {
    variables: [{ name: 'EVENTUAL_CONSISTENCY_S', value: '300' }],
    default: '`300`',
    meaning: "For how long after a launch EC2 not showing the instance, or any instance with the launch's client token, proves nothing (AWS: its reads lag behind a launch, and callers should back off up to about five minutes). Within it a read or a sync leaves the record as it is instead of marking it terminated, a stop or terminate answers 409 to retry, and a launch cut off by a crash keeps counting against `MAX_INSTANCES` instead of being failed. `0` trusts every answer at once (an emulator that is immediately consistent)",
  },
  {
    variables: [{ name: 'MAX_CONCURRENT_READS', value: '4' }],
    default: '`4`',
    meaning: 'Read scripts (`GET /instances/{id}` describes) running at once; more wait in line, first in first out, never refused',
  },
  {
    variables: [{ name: 'MAX_QUEUED_OPERATIONS', value: '32' }],
    default: '`32`',
    meaning: 'Operations this server accepts to wait, first in first out, behind that cap; beyond it 503 with `Retry-After`. With replicas, any of them with a free slot runs the oldest waiting operation',
  },
  {
    variables: [{ name: 'SHUTDOWN_TIMEOUT_MS', value: '25000' }],
    default: '`25000`',
    meaning: 'On SIGTERM/SIGINT, the whole shutdown: in-flight work may finish until the last quarter of it (at most 2 s), then it is killed and marked interrupted; fits a 30 s grace period',
  },
  {
    variables: [{ name: 'SYNC_INTERVAL_S', value: '0', example: '300' }],
    default: '`0` (off)',
    meaning: 'Reconcile the records with EC2 every so many seconds (10 or more); with replicas, one of them does it',
  },
  {
    variables: [{ name: 'LEASE_TIMEOUT_S', value: '30' }],
    default: '`30`',
    meaning: 'PostgreSQL with several servers: how long a server that stopped renewing its lease (it renews every third of this) still counts as alive; then another takes over its unfinished operations (3 to 3600)',
  },
  {
    variables: [{ name: 'IDEMPOTENCY_KEY_TTL_HOURS', value: '24' }],
    default: '`24`',
    meaning: 'How long an `Idempotency-Key` is remembered (at least 24)',
  },
  {
    variables: [{ name: 'EVENT_RETENTION_HOURS', value: '72' }],
    default: '`72`',
    meaning: 'How long the events of `GET /events` are kept for resuming (`Last-Event-ID`); a client asking for an older one is told so and given the current state',
  },
  {
    variables: [{ name: 'MAX_EVENT_CLIENTS', value: '100' }],
    default: '`100`',
    meaning: 'Event streams (`GET /events`) open at once on this server; beyond it 503 with `Retry-After`',
  },
  {
    variables: [{ name: 'EVENT_HEARTBEAT_S', value: '15' }],
    default: '`15`',
    meaning: 'How often an idle event stream gets a comment line, so proxies and clients see it alive (1 to 300)',
  },
  {
    variables: [{ name: 'EVENT_CLIENT_STALL_S', value: '30' }],
    default: '`30`',
    meaning: 'An event stream client that reads slower than events come reads on from the store (a bounded amount waits in memory for it); one whose connection takes nothing for this long is dropped',
  },
  {
    variables: [{ name: 'API_TOKENS', value: '', secret: true }],
    default: 'unset',
    meaning: 'Comma-separated `name:role:token` entries, role `viewer` or `operator` (see [Security](#security))',
  },
  {
    variables: [{ name: 'API_TOKENS_FILE', value: '', example: '/etc/ec2-creator/api-tokens' }],
    default: 'unset',
    meaning: 'A file of the same entries, one per line, `#` comments; mode 0600 or 0640',
  },
  {
    variables: [{ name: 'AUTH_DISABLED', value: 'false' }],
    default: '`false`',
    meaning: 'Turn authentication off; refused unless `HOST` is a loopback address',
  },
  {
    variables: [{ name: 'PUBLIC_DOCS', value: 'false' }],
    default: '`false` (`true` in the sandbox)',
    meaning: 'Serve `/openapi.json` and `/docs` without a token (for reading only)',
  },
  {
    variables: [{ name: 'TRUST_PROXY', value: 'false', example: 'loopback' }],
    default: '`false`',
    meaning: 'The proxies (load balancer) whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed: a number of hops, or addresses, CIDRs and `loopback`/`linklocal`/`uniquelocal`, comma-separated. Then the client address in logs and operations is the real one, and a session cookie gets `Secure` when the proxy received HTTPS. `true` is refused',
  },
  {
    variables: [{ name: 'SESSION_TTL_HOURS', value: '12' }],
    default: '`12`',
    meaning: 'How long a browser session lasts once an API token is exchanged for it (`POST /session`); 1 to 720',
  },
  {
    variables: [{ name: 'METRICS_PUBLIC', value: 'false' }],
    default: '`false`',
    meaning: 'Serve `GET /metrics` (Prometheus) without a token; otherwise any token reads it, a viewer\'s included',
  },
  {
    variables: [{ name: 'MAX_INSTANCES', value: '5' }],
    default: '`5`',
    meaning: 'Live managed instances at once (launches in flight included); beyond it 409',
  },
  {
    variables: [{ name: 'DEFAULT_TTL_HOURS', value: '0' }],
    default: '`0`',
    meaning: 'Hours a new instance lives when its request names no `expires_at` or `ttl_hours`; `0`: no expiry',
  },
  {
    variables: [{ name: 'MAX_TTL_HOURS', value: '720' }],
    default: '`720`',
    meaning: 'The furthest expiry a create or `PATCH` may ask for, in hours from now (beyond it 422); `0`: no limit',
  },
  {
    variables: [{ name: 'DEFAULT_ON_EXPIRY', value: 'stop' }],
    default: '`stop`',
    meaning: 'What the scheduler does at expiry when the request does not say: `stop` or `terminate`',
  },
  {
    variables: [{ name: 'EXPIRY_WARNING_MINUTES', value: '60' }],
    default: '`60`',
    meaning: 'How long before an expiry the warning goes out (email, webhooks, `instance.expiring` on `GET /events`); `0`: none',
  },
  {
    variables: [{ name: 'SCHEDULER_INTERVAL_S', value: '30' }],
    default: '`30`',
    meaning: 'How often the scheduler looks for due expiries and scheduled stops and starts (one replica at a time); `0`: never',
  },
  {
    variables: [{ name: 'DEFAULT_SCHEDULE', value: '', example: '{"stop_at":"19:00","start_at":"08:00","days":"mon-fri","timezone":"Europe/Berlin"}' }],
    default: 'none',
    meaning: 'The off-hours schedule (JSON, as `schedule` on create) a new instance gets unless its request says `schedule: null`',
  },
  {
    variables: [
      { name: 'FREE_TIER_INSTANCE_HOURS', value: '750' },
      { name: 'FREE_TIER_EBS_GB_MONTHS', value: '30' },
      { name: 'FREE_TIER_PUBLIC_IPV4_HOURS', value: '750' },
    ],
    default: '`750`, `30`, `750`',
    meaning: "The month's free allowances `GET /usage` measures against: instance hours (of `FREE_TIER_INSTANCE_TYPES`), EBS GB-months, public IPv4 address hours",
  },
  {
    variables: [{ name: 'FREE_TIER_INSTANCE_TYPES', value: 't2.micro,t3.micro' }],
    default: '`t2.micro,t3.micro`',
    meaning: 'The instance types whose hours the free tier covers (others are shown, not counted against it)',
  },
  {
    variables: [{ name: 'FREE_TIER_GUARD', value: 'warn' }],
    default: '`warn`',
    meaning: "A create or start whose projection would pass an allowance: `refuse` answers 422 with the numbers; `warn` goes ahead with a `Warning` header and a note on the operation; `off` does not look",
  },
  {
    variables: [{ name: 'SECURITY_GROUP_CIDR', value: '', example: '203.0.113.7/32' }],
    default: 'none',
    meaning: 'Where SSH into the managed security group comes from when a create with `create_security_group` gives no `ssh_cidr` (then it must)',
  },
  {
    variables: [{ name: 'ALLOW_OPEN_SECURITY_GROUP', value: 'false' }],
    default: '`false`',
    meaning: 'Allow opening the managed security group to the whole internet (`0.0.0.0/0` or `::/0`); otherwise such a create gets 422',
  },
  {
    variables: [{ name: 'RATE_LIMIT_PER_MINUTE', value: '60' }],
    default: '`60`',
    meaning: 'Changing requests per token per minute; beyond it 429 with `Retry-After`; `0` turns it off',
  },
  {
    variables: [
      { name: 'HTTP_HEADERS_TIMEOUT_MS', value: '15000' },
      { name: 'HTTP_REQUEST_TIMEOUT_MS', value: '60000' },
      { name: 'HTTP_KEEP_ALIVE_TIMEOUT_MS', value: '5000' },
    ],
    default: '`15000`, `60000`, `5000`',
    meaning: 'How long a client may take to send headers and the whole request (answered 408 within about half a second of the limit), and how long an idle connection stays open (a long synchronous operation is not cut off by these)',
  },
  {
    variables: [{ name: 'LOG_LEVEL', value: 'info' }],
    default: '`info`',
    meaning: '`error`, `warn`, `info`, `http`, `verbose`, `debug` or `silly`',
  },
  {
    variables: [
      { name: 'SMTP_HOST', value: '', example: 'smtp.example.com' },
      { name: 'NOTIFICATION_EMAIL', value: '', example: 'ops@example.com,oncall@example.com' },
    ],
    default: 'unset',
    meaning: 'Email on lifecycle events; both or neither (see [Email](#email-notifications))',
  },
  { variables: [{ name: 'SMTP_PORT', value: '587' }], default: '`587`', meaning: 'SMTP port' },
  {
    variables: [
      { name: 'SMTP_USER', value: '', example: 'ec2-creator' },
      { name: 'SMTP_PASSWORD', value: '', secret: true },
    ],
    default: 'unset',
    meaning: 'SMTP login, both or neither; with them STARTTLS is required',
  },
  { variables: [{ name: 'SMTP_SECURE', value: '' }], default: '`true` on port 465', meaning: 'Implicit TLS' },
  {
    variables: [{ name: 'SMTP_REQUIRE_TLS', value: '' }],
    default: '`true` with a login',
    meaning: 'Refuse to send without STARTTLS',
  },
  {
    variables: [{ name: 'SMTP_FROM', value: '', example: 'ec2-creator@example.com' }],
    default: '`ec2-creator@<hostname>`',
    meaning: 'Sender address',
  },
  {
    variables: [
      { name: 'SMTP_ATTEMPTS', value: '5' },
      { name: 'SMTP_RETRY_BASE_MS', value: '2000' },
    ],
    default: '`5`, `2000`',
    meaning: 'Delivery attempts, and the first delay between them (doubling)',
  },
  {
    variables: [{ name: 'WEBHOOK_URLS', value: '', example: 'https://hooks.example.com/ec2-creator' }],
    default: 'unset',
    meaning: 'Comma-separated `http(s)://` URLs that receive every lifecycle event as a signed POST (see [Webhooks](#webhooks))',
  },
  {
    variables: [{ name: 'WEBHOOK_SECRET', value: '', secret: true }],
    default: 'unset',
    meaning: 'The HMAC-SHA256 key deliveries are signed with (16 characters or more); needed with `WEBHOOK_URLS` unless `WEBHOOK_FORMAT=slack`',
  },
  {
    variables: [{ name: 'WEBHOOK_FORMAT', value: 'json' }],
    default: '`json`',
    meaning: '`json` (the event) or `slack` (`{"text": "…"}`, one line for a Slack incoming webhook)',
  },
  {
    variables: [
      { name: 'WEBHOOK_ATTEMPTS', value: '5' },
      { name: 'WEBHOOK_RETRY_BASE_MS', value: '2000' },
      { name: 'WEBHOOK_TIMEOUT_MS', value: '10000' },
    ],
    default: '`5`, `2000`, `10000`',
    meaning: 'Delivery attempts (network errors, time-outs, 429 and 5xx are retried; another 4xx is final), the first delay between them (doubling), and how long one attempt may take',
  },
  {
    variables: [],
    label: 'AWS_*',
    default: '—',
    meaning: "The AWS CLI's own variables (`AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL`, …) pass through to the scripts",
  },
];
