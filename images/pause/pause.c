/*
 * pause: the process that keeps a pod sandbox's namespaces alive.
 *
 * It does nothing but wait. SIGTERM and SIGINT make it exit 0, so stopping a
 * sandbox is quick and clean. As PID 1 of a PID namespace it also inherits
 * orphaned processes, so it reaps every exited child to keep zombies from
 * piling up. It prints nothing, except a warning when it is not PID 1 (it
 * still runs then: handy for trying it out by hand).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void exit_cleanly(int sig)
{
	(void)sig;
	_exit(0);
}

static void reap_children(int sig)
{
	int saved_errno = errno;

	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved_errno;
}

static int install_handler(int sig, void (*handler)(int), int flags)
{
	struct sigaction action;

	memset(&action, 0, sizeof(action));
	action.sa_handler = handler;
	action.sa_flags = flags;
	sigemptyset(&action.sa_mask);
	return sigaction(sig, &action, NULL);
}

int main(void)
{
	if (getpid() != 1)
		fputs("pause: warning: not running as PID 1\n", stderr);

	if (install_handler(SIGTERM, exit_cleanly, 0) < 0 ||
	    install_handler(SIGINT, exit_cleanly, 0) < 0 ||
	    install_handler(SIGCHLD, reap_children, SA_NOCLDSTOP | SA_RESTART) < 0) {
		perror("pause: sigaction");
		return 1;
	}

	for (;;)
		pause();
}
