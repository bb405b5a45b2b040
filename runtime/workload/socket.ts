/** The Workload API socket when the config names none (issue 18). */
export const DEFAULT_WORKLOAD_SOCKET = '/run/edgeward/workload.sock';
