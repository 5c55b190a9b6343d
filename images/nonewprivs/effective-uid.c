/*
 * effective-uid: print the effective user ID. Installed set-user-ID root in
 * the nonewprivs test image, so run as another user it prints 0 unless
 * no_new_privs keeps the set-user-ID bit from taking effect.
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	printf("Effective uid: %d\n", (int)geteuid());
	return 0;
}
