/** GET /usage: the free-tier meter's answer (computed by app/domain/usage.ts). */
const figure = (unit: string) => ({
  type: 'object',
  required: ['used', 'projected', 'allowance', 'remaining', 'projected_over', 'estimated'],
  properties: {
    used: { type: 'number', description: `${unit} used this month so far` },
    projected: { type: 'number', description: `${unit} by the month's end if what runs now keeps running` },
    allowance: { type: 'number', description: 'The configured free allowance' },
    remaining: { type: 'number', description: 'Allowance minus used, never below 0' },
    projected_over: { type: 'boolean' },
    estimated: { type: 'boolean', description: 'Part of the figure comes from instances recorded before history was kept (counted from their launch time)' },
  },
}) as const;

export const usageReportSchema = {
  title: 'UsageReport',
  type: 'object',
  required: ['month', 'from', 'to', 'as_of', 'complete', 'instance_hours', 'ebs_gb_months', 'public_ipv4_hours', 'top_instances', 'estimated_instances'],
  properties: {
    month: { type: 'string', examples: ['2026-11'] },
    from: { type: 'string', format: 'date-time' },
    to: { type: 'string', format: 'date-time' },
    as_of: { type: 'string', format: 'date-time' },
    complete: { type: 'boolean', description: 'The month is over.' },
    instance_hours: {
      ...figure('Instance hours of free-tier types (FREE_TIER_INSTANCE_TYPES)'),
      required: [...figure('').required, 'by_type', 'free_tier_types'],
      properties: {
        ...figure('Instance hours of free-tier types (FREE_TIER_INSTANCE_TYPES)').properties,
        by_type: {
          type: 'array',
          items: {
            type: 'object',
            required: ['instance_type', 'free_tier', 'hours'],
            properties: { instance_type: { type: 'string' }, free_tier: { type: 'boolean' }, hours: { type: 'number' } },
          },
        },
        free_tier_types: { type: 'array', items: { type: 'string' } },
      },
    },
    ebs_gb_months: figure('EBS GB-months'),
    public_ipv4_hours: figure('Public IPv4 address hours'),
    top_instances: {
      type: 'array',
      description: 'The ten instances that used the most',
      items: {
        type: 'object',
        required: ['instance_id', 'name', 'instance_type', 'instance_hours', 'ebs_gb_months', 'public_ipv4_hours', 'estimated'],
        properties: {
          instance_id: { type: 'string' }, name: { type: 'string' }, instance_type: { type: 'string' },
          instance_hours: { type: 'number' }, ebs_gb_months: { type: 'number' }, public_ipv4_hours: { type: 'number' },
          estimated: { type: 'boolean' },
        },
      },
    },
    estimated_instances: { type: 'array', items: { type: 'string' } },
  },
} as const;
