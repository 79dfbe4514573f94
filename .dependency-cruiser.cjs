/**
 * The layering README.md describes ("Architecture"), checked on every `npm run lint` and in CI.
 * Rooms: http → domain → ec2 / store; schemas, errors of each layer and the shared helpers below them.
 */
const APP = '^app/';

module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      comment: 'A cycle makes the load order decide behaviour and blurs which module owns what.',
      severity: 'error',
      from: { path: APP },
      to: { circular: true },
    },
    {
      name: 'domain-knows-no-http',
      comment: 'The domain is HTTP-agnostic: named errors, mapped to statuses once in app/http.',
      severity: 'error',
      from: { path: '^app/domain/' },
      to: { path: ['^app/http/', '^app/app\\.ts$', '^app/server\\.ts$', '^express$', '^node_modules/express/'] },
    },
    {
      name: 'http-runs-no-script',
      comment: 'Route handlers go through the domain; only app/ec2 runs scripts.',
      severity: 'error',
      from: { path: '^app/http/' },
      to: { path: ['^app/ec2/', '^app/store/'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'only-ec2-spawns-processes',
      comment: 'Every process the service starts goes through the script runner (timeouts, process groups, redaction).',
      severity: 'error',
      from: { path: APP, pathNot: '^app/ec2/' },
      to: { path: ['^execa$', 'node_modules/execa/', '^child_process$'] },
    },
    {
      name: 'only-store-writes-sql',
      comment: 'SQL lives in the repositories; the rest speaks to their interfaces.',
      severity: 'error',
      from: { path: APP, pathNot: '^app/store/' },
      to: { path: ['^better-sqlite3$', 'node_modules/better-sqlite3/'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'lower-layers-stay-below',
      comment: 'ec2, store, notify and schemas serve the domain; they never reach up into it or into http.',
      severity: 'error',
      from: { path: ['^app/ec2/', '^app/store/', '^app/notify/', '^app/schemas/'] },
      to: { path: ['^app/domain/', '^app/http/', '^app/app\\.ts$', '^app/server\\.ts$'] },
    },
    {
      name: 'auth-below-domain-and-http',
      comment: 'Tokens and their configuration are read at start-up; they need neither routes nor launch policy.',
      severity: 'error',
      from: { path: '^app/auth/' },
      to: { path: ['^app/domain/', '^app/http/'] },
    },
    {
      name: 'shared-helpers-need-no-auth',
      comment: 'Redaction serves every log line and script run: it is shared, not part of auth.',
      severity: 'error',
      from: { path: ['^app/ec2/', '^app/store/', '^app/notify/', '^app/logger\\.ts$', '^app/shared/'] },
      to: { path: '^app/auth/' },
    },
    {
      name: 'schemas-stand-alone',
      comment: 'Schemas are the single source for validation, OpenAPI and types; they import nothing of ours.',
      severity: 'error',
      from: { path: '^app/schemas/' },
      to: { path: APP, pathNot: '^app/schemas/' },
    },
    {
      name: 'store-and-ec2-apart',
      comment: 'The EC2 layer and the store do not know each other; the domain joins them.',
      severity: 'error',
      from: { path: '^app/(ec2|store)/' },
      to: { path: '^app/(ec2|store)/', pathNot: '^app/$1/' },
    },
    {
      name: 'only-the-entry-points-wire',
      comment: 'Only server.ts (and app.ts for the HTTP app) put the rooms together.',
      severity: 'error',
      from: { path: APP, pathNot: ['^app/server\\.ts$'] },
      to: { path: '^app/server\\.ts$' },
    },
    {
      name: 'app-never-imports-tests-or-tools',
      severity: 'error',
      from: { path: APP },
      to: { path: ['^test/', '^bench/', '^scripts/'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'] },
  },
};
