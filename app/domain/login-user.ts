/**
 * The SSH login user of an AMI, derived from its image name (and platform) the way the distributions
 * document it. Unknown images fall back to ec2-user, the most common default.
 */
const RULES: ReadonlyArray<readonly [RegExp, string]> = [
  [/ubuntu/i, 'ubuntu'],
  [/debian/i, 'admin'],
  [/centos/i, 'centos'],
  [/fedora/i, 'fedora'],
  [/(?:^|[^a-z])(?:rhel|red ?hat)/i, 'ec2-user'],
  [/suse|sles/i, 'ec2-user'],
  [/amzn|al20\d\d|amazon[ -]?linux/i, 'ec2-user'],
  [/bitnami/i, 'bitnami'],
];

export const DEFAULT_LOGIN_USER = 'ec2-user';

export function loginUserFor(image: { name?: string | null; description?: string | null; platform?: string | null }): string {
  if (image.platform?.toLowerCase().startsWith('windows')) return 'Administrator';
  for (const text of [image.name, image.description]) {
    if (!text) continue;
    for (const [pattern, user] of RULES) if (pattern.test(text)) return user;
  }
  return DEFAULT_LOGIN_USER;
}

/** `ssh -i ~/.ssh/<key>.pem <user>@<ip>`, or "" when there is no public IP to reach. */
export function sshString(row: { public_ip: string | null; key_name: string | null; login_user: string }): string {
  if (!row.public_ip) return '';
  const identity = row.key_name ? `-i ~/.ssh/${row.key_name}.pem ` : '';
  return `ssh ${identity}${row.login_user}@${row.public_ip}`;
}
