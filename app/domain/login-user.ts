/**
 * The SSH login user of an AMI, derived from its image name (and platform) the way the distributions
 * document it. Unknown images fall back to ec2-user, the most common default.
 */
import { shellPath } from '../shell-word.js';

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

/** Where the private key of the configured key pair is kept (KEY_FILE), when not ~/.ssh/<key>.pem. */
export interface KeyFiles {
  keyName: string;
  keyFile: string | null;
}

/**
 * `ssh -i <key file> <user>@<ip>`, or "" when there is no public IP to reach. The key file is KEY_FILE for
 * the configured key pair, else `~/.ssh/<key>.pem`, where `ensure_key_pair.sh --create` and the AWS
 * console's download put it.
 */
export function sshString(row: { public_ip: string | null; key_name: string | null; login_user: string }, keyFiles?: KeyFiles): string {
  if (!row.public_ip) return '';
  if (!row.key_name) return `ssh ${row.login_user}@${row.public_ip}`;
  const file = keyFiles?.keyFile && row.key_name === keyFiles.keyName ? keyFiles.keyFile : `~/.ssh/${row.key_name}.pem`;
  return `ssh -i ${shellPath(file)} ${row.login_user}@${row.public_ip}`;
}
